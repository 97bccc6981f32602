"""The engine (DESIGN §5): simpy drives the one controller through the world.

``replication`` is the glue: one replication's simpy process and its invariants. Its parts, one
job each: ``clock`` (simpy's event loop), ``pods`` (start-up, readiness, endpoints, capacity),
``routing`` (weight, selectors, match routes, DNS, propagation delays), ``drafting`` (when the
data plane draws), ``detectors`` (gates' measurements, burn-rate alerts, humans, the detection
record) and ``recorder`` (the outcome record and trace). The data plane draws requests exactly
in pieces (``tape``, ``flows``) and ``blast`` counts them against the old version at full
capacity (either version's bad requests, the release-caused ones and whom they hurt);
``outcome`` and ``trace`` are the records; ``seeds`` says where every random stream comes from;
the per-request ``reference`` engine (with its ``reference_metrics``) checks it all."""
