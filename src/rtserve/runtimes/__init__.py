"""Framework adapters: one per framework packages a model into a bundle and loads it back.

``base`` is the adapter interface and ``ModelOutput``; ``registry`` picks the adapter for a model;
``sklearn``, ``xgboost``, ``lightgbm`` and ``onnx`` are the adapters (``trusted_types`` the one
allow-list of loadable code, ``model_file`` safe reading by extension, ``frame`` the input layout);
``convert`` and ``export_gate`` export to ONNX and prove the export answers alike.
"""
