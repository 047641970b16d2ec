"""The bundle format, a value: what a bundle on disk holds and how it proves it is intact.

``bundle`` opens, verifies and saves one; ``manifest`` is ``rtserve.yaml``; ``schema``,
``schema_inference``, ``validator`` and ``jsonschema`` define, infer, enforce and publish the input
contract; ``sample``, ``profile`` and ``policy`` are its validation rows, training statistics and
serving policies; ``integrity``, ``paths``, ``archive`` and ``naming`` guard digests, file reads,
``.tar.gz`` packing and names; ``signature`` signs a digest and checks who signed it. It reads
no settings and knows nothing of serving.
"""
