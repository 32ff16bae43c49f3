"""Feature views served at the door and joined offline: one definition, three uses.

- :mod:`~prodgate.features.online`: the online store (Redis or the store) behind one
  interface; :mod:`~prodgate.features.feast` reads an existing Feast online store;
- :mod:`~prodgate.features.sources`: reading a view's source (Parquet, CSV, SQL);
- :mod:`~prodgate.features.materialize`: loading a source's latest values online;
- :mod:`~prodgate.features.lookup`: the batched lookup and the view's policy (fresh,
  stale, missing, default or refuse), shared by serving and the offline join;
- :mod:`~prodgate.features.offline`: point-in-time joins for training and evaluation.

The gateway's enrichment stage is :mod:`prodgate.pipeline.enrichment`.
"""
