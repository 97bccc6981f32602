"""The engine (DESIGN §5): simpy drives the one controller through the world, the data plane draws
requests exactly in pieces (tape, flows), outcomes and traces record what happened, seeds say
where every random stream comes from; the per-request reference engine checks it all."""
