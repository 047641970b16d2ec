"""The transport-neutral serving core: loaded bundles answering validated requests.

``loader`` opens a bundle into a ``predictor`` (checking ``framework_versions``); ``manager``
holds what is served and its state; ``batcher`` and ``cache`` sit between requests and a
runtime; ``dataplane`` is the operations every transport calls; ``predictions`` is what a
predictor answers. It emits ``rtserve.events.PredictionEvent``s and imports no web framework.
"""
