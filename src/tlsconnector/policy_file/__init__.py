"""The policy file (TOML): reading, writing, the JSON Schema, and the lint (an edge).

* :mod:`~tlsconnector.policy_file.loading`: ``load_policy(path)``, the file and its
  ``[trust] ca_file`` read with bounds, then :meth:`~tlsconnector.Policy.from_mapping`;
* :mod:`~tlsconnector.policy_file.writing`: a policy written back as TOML (``import-eop``);
* :mod:`~tlsconnector.policy_file.schema`: the shipped JSON Schema (``policy.schema.json``);
* :mod:`~tlsconnector.policy_file.lint`: likely mistakes in a valid policy.
"""
