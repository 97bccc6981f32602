"""The world a release meets (DESIGN §5): traffic, users and segments, the baseline version and
the release population with its faults, the platform (pods, routers, metrics) and the operators
(alerts, humans). Declarative, validated models; ``model.World`` composes them."""
