"""TFLite Quantization Lab (placeholder home page until the dashboard lands)."""

import streamlit as st

st.set_page_config(page_title="TFLite Quantization Lab", page_icon="🔬")
st.title("TFLite Quantization Lab")
st.write("The engine is in `core/`; run `python -m core run` for the headless comparison.")
