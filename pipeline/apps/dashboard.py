"""The desks' dashboard (issue 17; seed 002 "Dashboard"): ``trader dashboard`` runs ``streamlit run`` on this file.

One page per desk, each one module under ``pipeline/apps/pages/`` listed in :data:`PAGES` (a new desk adds its module
and one line here). Every page reads only the published read-only serving snapshot (``exports/current``) through
:mod:`pipeline.apps.common`; the sidebar shows how old it is.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pipeline.apps import common

HERE = Path(__file__).resolve().parent

#: (page module relative to this file, title, icon), in the navigation's order; the first is the default page
PAGES = [
    ("pages/overview.py", "Overview", ":material/dashboard:"),
    ("pages/setup_scanner.py", "Setup scanner", ":material/candlestick_chart:"),
    ("pages/options_desk.py", "Options desk", ":material/currency_bitcoin:"),
    ("pages/research.py", "Research baseline", ":material/science:"),
]

st.set_page_config(page_title="trader dashboard", page_icon=":material/monitoring:", layout="wide")
nav = st.navigation([st.Page(HERE / p, title=t, icon=i, default=n == 0) for n, (p, t, i) in enumerate(PAGES)])
with st.sidebar:
    st.fragment(common.data_age, run_every=common.live_every())()
nav.run()
