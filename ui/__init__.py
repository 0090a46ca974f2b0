"""The Streamlit layer's shared helpers: session state, cached resources, small widgets.

Only the app (app.py, pages/) imports this package. It never imports TensorFlow or Keras: those run
in the job service's workers (``core.job_service``).
"""
