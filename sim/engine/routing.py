"""The router as requests meet it: weight, Service selectors, match routes, DNS (DESIGN §5).

The controller's routing actions land after the router kind's propagation delay (a selector
patch after the Service-selector delay; the controller's first actions at once). A DNS switch
moves each client at a uniform random moment within the TTL: while it lasts, the old stable
Service's groups still get the clients that have not moved (sim/engine/flows.py and cells.py).
Mirror routes and the cookie route (session affinity, sim/engine/affinity.py) are router
routes too and land after its delay; a load tester calls the canary Service at once.
"""

from __future__ import annotations

from collections.abc import Callable

from policies.controller import SetLoad, SetMatchRoute, SetMirror, SetSelectors, SetSessionAffinity
from sim.engine.affinity import Cookies
from sim.engine.flows import RoutingState

__all__ = ["Router"]


class Router:
    """The routing state of one replication (``state``) and how the controller's changes reach
    it. ``changing()`` is called as a change lands (the traffic drafted past now is redrawn),
    ``sync()`` to bring the traffic up to now, ``mark(kind, value)`` records it for the trace,
    and ``landed()`` follows every change (the rollback may now be complete for users)."""

    def __init__(
        self,
        clock,
        users,
        router_delay: float,
        selector_delay: float,
        cookies: Cookies,
        dns_order: Callable[[], tuple],
    ) -> None:
        """``dns_order()``: a new DNS switch's order of its clients (``UserCells.dns_order``)."""
        self.env, self.call = clock.env, clock.call
        self.dns_order = dns_order
        self.users = users  # the world's user model: which segments a match route selects
        self.router_delay, self.selector_delay = router_delay, selector_delay
        self.state = RoutingState()
        self.in_flight = 0  # changes on their way (a run is not settled before they land)
        self.match_routes: dict[str, tuple] = {}
        self.cookies = cookies  # session affinity (sim/engine/affinity.py)
        self.mirror_routes: dict[str, tuple] = {}  # name -> (percent, match), in order set
        self.changing: Callable[[], None] = _unconnected
        self.sync: Callable[[], None] = _unconnected
        self.mark: Callable[..., None] = _unconnected
        self.landed: Callable[[], None] = _unconnected

    def __repr__(self) -> str:
        return f"Router(delay={self.router_delay}, selector_delay={self.selector_delay})"

    def connect(self, *, changing, sync, mark, landed) -> None:
        self.changing, self.sync, self.mark, self.landed = changing, sync, mark, landed

    # ------------------------------------------------------------------ the controller's actions

    def set_weight(self, weight: float) -> None:
        self._later(self.router_delay, "weight", weight)

    def set_selectors(self, action: SetSelectors, *, initial: bool = False) -> None:
        self._later(0.0 if initial else self.selector_delay, "selectors", action)

    def set_match_route(self, action: SetMatchRoute) -> None:
        self._later(self.router_delay, "match", action)

    def set_mirror(self, action: SetMirror) -> None:
        self._later(self.router_delay, "mirror", action)

    def set_load(self, action: SetLoad) -> None:
        self._later(0.0, "load", action)  # the load tester calls the canary Service directly

    def set_session_affinity(self, action: SetSessionAffinity) -> None:
        self._later(self.router_delay, "affinity", action)

    def _later(self, delay: float, what: str, value) -> None:
        if delay <= 0:
            self._land(what, value)
        else:
            self.in_flight += 1
            self.call(self.env.now + delay, self._landing, what, value)

    def _landing(self, what: str, value) -> None:
        self.in_flight -= 1
        self._land(what, value)

    # ------------------------------------------------------------------ changes landing

    def _land(self, what: str, value) -> None:
        self.changing()
        self.mark(what, value if what == "weight" else _describe(value))
        state = self.state
        now = self.env.now
        if what == "weight":
            state = state._replace(weight=float(value))
            self.cookies.checkpoint(now, state.weight)
            if self.cookies.on and self.cookies.max_age < float("inf"):  # the last cookies end
                self.call(now + self.cookies.max_age, self._cookies_expired)
        elif what == "selectors":
            if value.transition_s > 0:
                state = state._replace(
                    dns_from=state.stable,
                    dns_start=now,
                    dns_ttl=value.transition_s,
                    dns_order=self.dns_order(),
                )
                self.call(now + value.transition_s, self._dns_settled, now)
            state = state._replace(stable=value.stable, canary=value.canary)
        elif what == "mirror":
            state = state._replace(mirrors=self._mirrors(value))
        elif what == "load":
            state = state._replace(load=max(0.0, float(value.rate)))
        elif what == "affinity":
            self.cookies.land(now, value.max_age_s, state.weight)
            if self.cookies.on:  # landing a route sets its order
                state = state._replace(cookie=self.cookies.piece(now, now))
            else:
                state = state._replace(cookie=None)
        else:
            if value.match:
                self.match_routes[value.name] = value.match
            else:
                self.match_routes.pop(value.name, None)
            matches = [m for ms in self.match_routes.values() for m in ms]
            state = state._replace(matched=frozenset(self.users.segments_matched_by(matches)))
        self.state = state
        self.landed()

    def _mirrors(self, action: SetMirror) -> tuple:
        """The mirror routes as the flows read them: (percent, segments or None), in order."""
        if action.percent > 0:
            self.mirror_routes[action.name] = (min(100.0, float(action.percent)), action.match)
        else:
            self.mirror_routes.pop(action.name, None)
        routes = []
        for percent, match in self.mirror_routes.values():
            segments = frozenset(self.users.segments_matched_by(match)) if match else None
            routes.append((percent, segments))
        return tuple(routes)

    def now_state(self):
        """The routing state as a request meets it now (with a cookie route: who holds one)."""
        if self.state.cookie is None:
            return self.state
        return self.state._replace(cookie=self.cookies.piece(self.env.now, self.env.now))

    def _cookies_expired(self) -> None:
        """A weight set max-age ago: the cookies given before it have expired by now."""
        self.sync()
        self.landed()

    def _dns_settled(self, started: float) -> None:
        """The TTL of the DNS switch begun at ``started`` has passed (unless another began).
        No cut: the drafting already draws past the TTL's end with every client moved."""
        state = self.state
        if state.dns_from is not None and state.dns_start == started:
            self.sync()
            self.state = self.state._replace(dns_from=None)


def _describe(action) -> str:
    if isinstance(action, SetSelectors):
        return f"stable={sorted(action.stable)} canary={sorted(action.canary)}"
    if isinstance(action, SetMirror):
        return f"{action.name}: {action.percent:g}%"
    if isinstance(action, SetLoad):
        return f"{action.rate:g}/s"
    if isinstance(action, SetSessionAffinity):
        return f"max-age {action.max_age_s:g}s"
    return f"{action.name}: {'on' if action.match else 'off'}"


def _unconnected(*_args):  # pragma: no cover - a wiring bug, never a user error
    raise RuntimeError("Router used before connect()")
