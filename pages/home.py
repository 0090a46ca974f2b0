"""Home: what quantization is, where this session stands, and what to do next."""

import streamlit as st

from ui import state
from ui.layout import STEPS, next_step, notice, through_the_app

through_the_app()
st.title("TFLite Quantization Lab")
st.markdown(
    """
**Quantization** stores a model's numbers with fewer bits: 8-bit integers instead of 32-bit
floats, say. The file gets about four times smaller and, on hardware built for integers, faster;
the price is a little accuracy, because every weight and activation is rounded to one of 256 levels.

TensorFlow Lite offers two ways to get there:

- **After training** (post-training quantization): convert a trained float model, optionally
  calibrating activation ranges on a few sample images. No retraining; this lab shows five flavours.
- **During training** (quantization-aware training): fine-tune the model with the rounding
  simulated, so it learns weights that survive it; usually loses less accuracy.

Here you take a real model through both and see, on real data, what changes: size, accuracy,
agreement with the float model, and latency, down to a digit you draw yourself.
"""
)


@st.fragment(run_every=0.25)
def dataset_loading() -> None:
    """Home draws before the dataset is loaded (in the background); this line stands in for the
    session's figures until it is, then Home is drawn again with them."""
    if state.current_dataset(wait=False) is not None:
        st.rerun(scope="app")
    st.caption("Loading the dataset (MNIST, or the offline digits without a network)…")


st.subheader("This session")
current = state.current_dataset(wait=False)
if current is None:
    dataset_loading()
else:
    dataset, choice = current
    notice(choice)
    model = state.model()
    converted = state.variants()
    left, middle, right = st.columns(3)
    left.metric(
        "Dataset",
        choice.upload_label or dataset.name,
        f"{dataset.train_size:,} train / {dataset.test_size:,} test",
        delta_color="off",
    )
    middle.metric("Model", model.label if model else "none yet")
    right.metric("Variants converted", len(converted), ", ".join(converted) or None, delta_color="off")

st.subheader("The pages, in order")
upcoming = next_step()
for number, (path, title, what) in enumerate(STEPS, start=1):
    if path == upcoming:
        st.page_link(path, label=f"**{number}. {title}**: {what}  ← next step", icon=":material/arrow_forward:")
    else:
        st.page_link(path, label=f"{number}. {title}: {what}", icon=":material/radio_button_unchecked:")
