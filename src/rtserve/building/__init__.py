"""Build-time code: turn a fitted model into a verified bundle, and re-seal an edited one.

``builder`` infers the schema, records the validation sample and profile and proves parity by
loading the result through the engine's loader; ``reseal`` re-signs a hand-edited manifest after
the same checks; ``environment`` records the interpreter and library versions into the manifest.
Build-time code may import the engine (to prove parity); nothing in the engine or server imports it.
(Not named ``build``: ``rtserve.build`` is the public function ``builder.build``.)
"""
