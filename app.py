"""TFLite Quantization Lab: the entry point (`streamlit run app.py`). Navigation only."""

from pathlib import Path

import streamlit as st

from ui import jobs
from ui.layout import sidebar_status

# The tab icon is a file the app serves: a material icon here would be fetched from fonts.gstatic.com.
ICON = Path(__file__).parent / "static" / "qlab" / "icon.png"
st.set_page_config(page_title="TFLite Quantization Lab", page_icon=str(ICON), layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:", url_path="model"),
    st.Page("pages/quantize.py", title="Quantize", icon=":material/compress:", url_path="quantize"),
    st.Page("pages/inside.py", title="Inside", icon=":material/grain:", url_path="inside"),
    st.Page("pages/compare.py", title="Compare", icon=":material/bar_chart:", url_path="compare"),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page("pages/deploy.py", title="Deploy", icon=":material/memory:", url_path="deploy"),
]

page = st.navigation(PAGES)
jobs.collect()  # a job that ended since the last run lands in this session's state, whatever the page
page.run()
sidebar_status()  # after the page, so it shows what the page just did
jobs.sidebar_panel()
