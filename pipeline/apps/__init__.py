"""People's views of the desks: the Streamlit dashboard (:mod:`pipeline.apps.dashboard`, ``trader dashboard``), one
page per desk under ``pipeline/apps/pages/``. Like the REST API it reads only the published serving snapshot, through
:class:`warehouse.serving.Snapshot` (``tests/test_architecture.py`` rule 9)."""
