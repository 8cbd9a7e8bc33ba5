"""The dashboard's pages: one Streamlit script per desk, listed in ``PAGES`` of :mod:`pipeline.apps.dashboard`
(run by ``st.navigation``, never imported)."""
