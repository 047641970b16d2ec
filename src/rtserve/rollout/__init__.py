"""Traffic policies as values: rollout specs and states, sticky splits, and the promotion gate's
statistics. The engine applies them (``rtserve.engine.rollout``); the registry stores them."""
