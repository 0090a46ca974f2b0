"""The session's side of the job service: submit, show progress anywhere, land results in state.

A job belongs to the session (its Streamlit session id is the owner), not to the script run that
submitted it: the run returns at once, and the job goes on through reruns and page switches.

* :func:`submit` hands a request to the server's one :class:`~core.job_service.JobService` and
  keeps a :class:`JobTicket` in ``st.session_state["lab_jobs"]`` (one per kind).
* :func:`collect` runs at the top of every script run (app.py): a finished job's result lands in
  the session's state whichever page is open; a failure leaves one line for its page.
* :func:`job_panel` (on the job's own page) and :func:`sidebar_panel` (on every page) poll with
  ``st.fragment(run_every=…)``, and rerun the app when a job ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from ui import state

if TYPE_CHECKING:  # types only: the service and NumPy are imported by the first job, not by Home's first run
    from core import jobs
    from core.datasets import DatasetRef
    from core.job_service import JobService, JobStatus

POLL_S = 0.5  # how often a page asks how its job is doing
KIND_TITLES = {"train": "Training", "convert": "Conversion", "load": "Loading the model", "keep_float": "Keeping layers float"}


def kind_title(kind: str) -> str:
    return KIND_TITLES.get(kind, kind.capitalize())


@dataclass(frozen=True)
class JobTicket:
    job_id: str
    kind: str
    how: str  # Submission.how: "new", "joined", "cached", "already"
    request: object  # the request (a frozen record): what to label the result with
    label: str = ""  # e.g. the model's label once trained
    submitted: float = 0.0


def _secrets_overrides() -> dict:
    """``[jobs]`` in .streamlit/secrets.toml may set ``workers`` or ``queue_url`` (Community Cloud's settings page);
    an environment variable (QLAB_WORKERS, …) wins over it."""
    global settings_problem
    try:
        section = st.secrets.get("jobs", {})
    except Exception as error:
        if not str(error).startswith("No secrets found"):  # no secrets file is the normal case; a broken one is not
            settings_problem = (
                f".streamlit/secrets.toml cannot be read, so the job settings are the defaults: {str(error).splitlines()[0]}"
            )
            print(f"job service: {settings_problem}", flush=True)
        return {}
    return {key: section[key] for key in ("workers", "max_jobs_per_worker", "idle_seconds", "queue_url") if key in section}


settings_problem = ""  # a malformed secrets.toml, said in the sidebar of every page (for the person who deployed)


def _session_alive(session_id: str) -> bool:
    from streamlit import runtime

    return not runtime.exists() or runtime.get_instance().is_active_session(session_id)


@st.cache_resource(show_spinner=False)
def service() -> JobService:
    """One job service (one pool, or one queue's workers) for every session of this server."""
    from core.job_service import PoolSettings, make_service

    return make_service(PoolSettings.from_env(overrides=_secrets_overrides()), owner_alive=_session_alive)


def owner() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    return context.session_id if context is not None else "no-session"


def tickets() -> dict[str, JobTicket]:
    return state.job_tickets()


def messages() -> dict[str, tuple[str, str]]:
    """The last word on each kind of job: (level, text), shown on its page until the next job."""
    return state.job_messages()


def dataset_ref() -> DatasetRef:
    """The session's dataset by reference, for a job: a built-in name, or the session's upload
    saved once (as an .npz in the session's folder) for the workers to read."""
    from core.datasets import DATASET_NAMES, DatasetRef, save_npz

    dataset, choice = state.current_dataset()
    if choice.name in DATASET_NAMES:
        return DatasetRef.of(dataset)
    saved = state.uploaded_ref()
    if saved is None or saved.digest != dataset.digest:
        saved = DatasetRef.of(dataset, save_npz(Path(service().owner_folder(owner())) / f"dataset-{dataset.digest}.npz", dataset))
        state.set_uploaded_ref(saved)
    return saved


def submit(request, label: str = "") -> JobTicket | None:
    """Queue the request for this session; returns at once (None, with a message for the page,
    when the service refuses it)."""
    from core.job_service import JobError

    try:
        submission = service().submit(request, owner())
    except (JobError, ValueError, OSError) as error:
        messages()[request.kind] = ("error", f"{kind_title(request.kind)} could not start: {error}")
        return None
    current = tickets().get(request.kind)
    if submission.how == "already" and current is not None and current.job_id == submission.job_id:
        messages()[request.kind] = (
            "info",
            f"{kind_title(request.kind)} is already under way for this session: cancel it first to start another.",
        )
        return current
    ticket = JobTicket(submission.job_id, request.kind, submission.how, request, label, time.time())
    tickets()[request.kind] = ticket
    messages().pop(request.kind, None)
    return ticket


def status(kind: str) -> JobStatus | None:
    ticket = tickets().get(kind)
    return service().status(ticket.job_id) if ticket else None


def active(kind: str) -> bool:
    found = status(kind)
    return found is not None and found.active


def cancel(kind: str) -> None:
    ticket = tickets().pop(kind, None)
    if ticket is not None:
        service().cancel(ticket.job_id, owner())
        messages()[kind] = (
            "warning",
            f"{kind_title(kind)} cancelled; its worker was stopped. Nothing else in this session changed.",
        )


# -- results landing in the session ------------------------------------------------------------

APPLY: dict[str, Callable[[JobTicket, object, JobStatus], None]] = {}


def applies(kind: str):
    def register(function):
        APPLY[kind] = function
        return function

    return register


def collect() -> None:
    """Land every finished job of this session in its state (called at the top of every run)."""
    if not tickets():
        return  # the common case: no job, and no need to start the service
    from core.job_service import DONE

    for kind, ticket in list(tickets().items()):
        found = service().status(ticket.job_id)
        if found is not None and found.active:
            continue
        tickets().pop(kind, None)
        if found is None:
            messages()[kind] = (
                "error",
                f"{kind_title(kind)} was lost: the server restarted or the job expired. Please start it again.",
            )
            continue
        if found.state != DONE:
            level = "error" if found.state == "failed" else "warning"
            messages()[kind] = (level, f"{kind_title(kind)} did not finish: {found.error}")
        elif kind in APPLY:
            try:
                APPLY[kind](ticket, service().result(ticket.job_id), found)
            except Exception as error:  # a result that cannot be used must not break every page
                messages()[kind] = ("error", f"{kind_title(kind)} finished, but its result could not be used: {error}")
        service().release(ticket.job_id, owner())


def show_message(kind: str) -> None:
    found = messages().get(kind)
    if found:
        level, text = found
        getattr(st, level)(text)


# -- progress, polled ----------------------------------------------------------------------------


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def describe(found: JobStatus) -> str:
    trouble = f" ({found.problem})" if found.problem else ""
    if found.state == "queued":
        return f"waiting for a free worker: {ordinal(found.position)} in line{trouble}"
    shared = f" (shared with {found.owners - 1} other session{'s' if found.owners > 2 else ''})" if found.owners > 1 else ""
    return f"{found.message or 'starting'}{shared}{trouble}"


def job_panel(kind: str, chart: Callable[[list[dict]], object] | None = None) -> None:
    """The full progress of this session's job of ``kind``, with a Cancel button; polls while it runs."""
    show_message(kind)
    if active(kind):
        _live_panel(kind, chart)


@st.fragment(run_every=POLL_S)
def _live_panel(kind: str, chart) -> None:
    found = status(kind)
    if found is None or not found.active:
        st.rerun()  # the job ended: run the whole app, so its result lands everywhere
    title = kind_title(kind)
    if found.state == "queued":
        st.info(f"{title}: {describe(found)}. It starts by itself; you can use the other pages meanwhile.")
    else:
        st.progress(min(max(found.fraction, 0.0), 1.0), text=f"{title}: {describe(found)}")
    if chart is not None and found.epochs:
        st.plotly_chart(chart(list(found.epochs)), key=f"live_chart_{kind}")
    if st.button("Cancel", key=f"cancel_{kind}", icon=":material/stop_circle:"):
        cancel(kind)
        st.rerun()


def sidebar_panel() -> None:
    """A line per running job of this session, on every page (and a broken secrets.toml, if any)."""
    if settings_problem:
        st.sidebar.warning(settings_problem)
    if any(active(kind) for kind in tickets()):
        with st.sidebar:
            _sidebar_live()


@st.fragment(run_every=POLL_S)
def _sidebar_live() -> None:
    lines = []
    for kind in list(tickets()):
        found = status(kind)
        if found is None or not found.active:
            st.rerun()
        lines.append(f"**{kind_title(kind)}**: {describe(found)}")
    st.caption("Running for this session")
    st.markdown("\n\n".join(lines))


# -- what each kind of result does to the session ---------------------------------------------------


def _provenance(ticket: JobTicket, found: JobStatus) -> str:
    if found.from_cache or ticket.how == "cached":
        return "cache"
    return "joined" if ticket.how == "joined" else ""


def _lab_model(label: str, outcome: jobs.TrainOutcome, dataset: DatasetRef | None, **more) -> state.LabModel:
    """A trained or loaded model as the session keeps it, with the digest and classes of its data."""
    return state.LabModel(
        label=label,
        keras_bytes=outcome.model_bytes,
        summary=outcome.summary,
        keras_accuracy=outcome.keras_accuracy,
        dataset_name=dataset.name if dataset else "",
        dataset_digest=outcome.dataset_digest,
        class_names=dataset.class_names if dataset else (),
        **more,
    )


@applies("train")
def _trained(ticket: JobTicket, outcome: jobs.TrainOutcome, found: JobStatus) -> None:

    request: jobs.TrainRequest = ticket.request
    origin = _provenance(ticket, found)
    state.set_model(
        _lab_model(
            ticket.label,
            outcome,
            request.dataset,
            history=outcome.history,
            seed=request.seed,
            origin=origin,
            augmented=request.augment,
        )
    )
    if origin == "cache":
        messages()["train"] = (
            "info",
            f"This model came from the class's shared cache: the same training (seed {request.seed}) "
            "was done before, so it was not run again. Change the seed for a run of your own.",
        )
    elif origin == "joined":
        messages()["train"] = (
            "info",
            f"Another session was running the same training (seed {request.seed}); this session "
            "joined it and got the same model. Change the seed for a run of your own.",
        )
    else:
        messages()["train"] = ("success", f"Trained in {outcome.train_s:.1f} s. Next: Quantize.")


@applies("load")
def _loaded(ticket: JobTicket, outcome: jobs.TrainOutcome, found: JobStatus) -> None:

    request: jobs.LoadModelRequest = ticket.request
    state.set_model(_lab_model(request.file_name, outcome, request.dataset))
    messages()["load"] = ("success", f"{request.file_name} loaded.")


@applies("convert")
def _converted(ticket: JobTicket, outcome: jobs.ConvertOutcome, found: JobStatus) -> None:
    from core import variants as registry

    model = state.model()
    if model is None or model.digest != outcome.model_digest:
        messages()["convert"] = ("warning", "A conversion finished for a model this session no longer uses; it was set aside.")
        return
    state.set_variants(
        {
            item.name: state.ConvertedVariant.from_job(
                item, outcome.calibration if registry.get(item.name).needs_calibration else 0
            )
            for item in outcome.files
        }
    )
    notes = [f"{registry.get(name).label} could not be built: {why}" for name, why in outcome.failures]
    origin = _provenance(ticket, found)
    if origin:
        notes.append(
            "These variants came from the class's shared cache: the same model was converted the same way before."
            if origin == "cache"
            else "Another session was converting the same model the same way; this session joined it."
        )
    messages()["convert"] = (
        "warning" if outcome.failures else "info" if origin else "success",
        "\n\n".join(notes) or f"Converted {len(outcome.files)} variant(s).",
    )


@applies("keep_float")
def _kept_float(ticket: JobTicket, outcome: jobs.KeepFloatOutcome, found: JobStatus) -> None:
    model = state.model()
    if model is None or model.digest != outcome.model_digest:
        messages()["keep_float"] = (
            "warning",
            "A keep-float build finished for a model this session no longer uses; it was set aside.",
        )
        return
    item = outcome.file
    state.add_variant(state.ConvertedVariant.from_job(item, outcome.calibration))
    if outcome.automatic is not None:
        state.keep_float_steps()[outcome.automatic["base"]] = outcome.automatic
        verdict = "within" if outcome.automatic["met"] else "not within"
        text = f"The automatic search chose {item.name}: {verdict} {outcome.automatic['max_drop_pp']:g} pp of float32."
    else:
        text = f"Built {item.name}: it is now in Compare, Draw, Deploy and the report."
    messages()["keep_float"] = ("success" if outcome.automatic is None or outcome.automatic["met"] else "warning", text)
