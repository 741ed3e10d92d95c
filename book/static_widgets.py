"""Static copies of a notebook's ipywidgets, for the course site (book/conf.py).

A stored notebook keeps each widget's last state in its metadata
(``application/vnd.jupyter.widget-state+json``). Rendering that state live needs the widget
manager's JavaScript, which myst-nb loads from a CDN; the site is offline, so instead every
widget output is replaced by plain outputs made from the saved state: boxes become rows and
columns of HTML, a progress bar a <progress>, a slider a disabled <input type="range"> with its
value, and an Output widget its stored outputs (a figure stays an image). A widget this module
does not know falls back to the output's own text/plain.

Only the copy handed to Sphinx is changed (book/conf.py, source-read), never the notebook on disk.
"""

from __future__ import annotations

import html

STATE_MIME = "application/vnd.jupyter.widget-state+json"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"

NOTE = ('<p class="kd-widget-note">A static copy of this widget as it was saved; run the notebook '
        "in Jupyter to move it.</p>")

_CONTROLS = {"SelectionSliderModel", "SelectionRangeSliderModel", "FloatSliderModel",
             "IntSliderModel", "FloatLogSliderModel", "DropdownModel", "ToggleButtonsModel",
             "RadioButtonsModel", "CheckboxModel", "ToggleButtonModel", "ButtonModel",
             "TextModel", "TextareaModel", "FloatTextModel", "IntTextModel"}


def _label(state: dict) -> str:
    description = state.get("description") or ""
    if not description:
        return ""
    if not state.get("description_allow_html"):
        description = html.escape(description)
    return f'<label class="kd-widget-label">{description}</label> '


def _readout(value, fmt: str | None) -> str:
    try:
        return format(value, fmt) if fmt else f"{value:g}"
    except (TypeError, ValueError):
        return str(value)


def _control(name: str, state: dict) -> str:
    """One control (slider, dropdown, button, ...) as disabled HTML showing its saved value."""
    label = _label(state)
    if name in ("SelectionSliderModel", "FloatSliderModel", "IntSliderModel",
                "FloatLogSliderModel"):
        if name == "SelectionSliderModel":
            labels = state.get("_options_labels") or []
            index = state.get("index") or 0
            lo, hi, step, value = 0, max(len(labels) - 1, 0), 1, index
            readout = labels[index] if 0 <= index < len(labels) else ""
        else:
            lo, hi = state.get("min", 0), state.get("max", 100)
            step, value = state.get("step", 1), state.get("value", lo)
            readout = _readout(value, state.get("readout_format"))
        return (f'<span class="kd-widget-slider">{label}<input type="range" disabled '
                f'min="{lo}" max="{hi}" step="{step}" value="{value}"> '
                f'<output>{html.escape(str(readout))}</output></span>')
    if name in ("DropdownModel", "ToggleButtonsModel", "RadioButtonsModel"):
        labels = state.get("_options_labels") or []
        index = state.get("index")
        value = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
        return (f'<span class="kd-widget-control">{label}'
                f'<output>{html.escape(str(value))}</output></span>')
    if name == "ButtonModel":
        text = html.escape(state.get("description", ""))
        return f'<button class="kd-widget-button" disabled>{text}</button>'
    return (f'<span class="kd-widget-control">{label}'
            f'<output>{html.escape(str(state.get("value", "")))}</output></span>')


def _render(model_id: str, models: dict, seen: set) -> list | None:
    """The widget `model_id` as a list of items: HTML strings and nbformat output dicts.
    None when the state is missing or holds a widget this module does not know."""
    model = models.get(model_id)
    if model is None or model_id in seen:
        return None
    seen = seen | {model_id}
    name, state = model.get("model_name", ""), model.get("state", {})
    if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
        items: list = []
        for child in state.get("children", []):
            rendered = _render(str(child).removeprefix("IPY_MODEL_"), models, seen)
            if rendered is None:
                return None
            items.extend(rendered)
        kind = "hbox" if name == "HBoxModel" else "vbox"
        if all(isinstance(item, str) for item in items):  # one block of HTML
            return [f'<div class="kd-widget-{kind}">{"".join(items)}</div>']
        return items  # holds outputs (figures): keep them as outputs, in order
    if name in ("HTMLModel", "HTMLMathModel"):
        return [f'<span class="kd-widget-html">{_label(state)}{state.get("value", "")}</span>']
    if name == "LabelModel":
        return [f'<span class="kd-widget-html">{html.escape(str(state.get("value", "")))}</span>']
    if name in ("FloatProgressModel", "IntProgressModel"):
        lo, hi, value = state.get("min", 0), state.get("max", 100), state.get("value", 0)
        style = html.escape(state.get("bar_style") or "")
        return [f'<span class="kd-widget-progress {style}">{_label(state)}'
                f'<progress value="{value - lo}" max="{hi - lo}"></progress></span>']
    if name == "OutputModel":
        return [dict(out, metadata=out.get("metadata", {})) if out.get("output_type") in
                ("display_data", "execute_result") else out for out in state.get("outputs", [])]
    if name in _CONTROLS:
        return [_control(name, state)]
    return None


def _has_controls(model_id: str, models: dict, seen: frozenset = frozenset()) -> bool:
    model = models.get(model_id) or {}
    if model_id in seen:
        return False
    if model.get("model_name") in _CONTROLS:
        return True
    children = (model.get("state") or {}).get("children", [])
    return any(_has_controls(str(c).removeprefix("IPY_MODEL_"), models, seen | {model_id})
               for c in children)


def _html_output(body: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": body, "text/plain": "(widget)"}}


def static_outputs(view: dict, fallback, models: dict) -> list[dict]:
    """The outputs that replace one widget-view output."""
    model_id = view.get("model_id", "")
    items = _render(model_id, models, set())
    if items is None:  # unknown widget or no saved state: its own text/plain, if any
        if not fallback:
            return []
        return [{"output_type": "display_data", "metadata": {}, "data": {"text/plain": fallback}}]
    if _has_controls(model_id, models):
        items.append(NOTE)
    outputs, pending = [], []
    for item in items:
        if isinstance(item, str):
            pending.append(item)
            continue
        if pending:
            outputs.append(_html_output("".join(pending)))
            pending = []
        outputs.append(item)
    if pending:
        outputs.append(_html_output("".join(pending)))
    return outputs


def staticize(nb: dict) -> None:
    """Make every widget output of a notebook (its JSON as a dict) static, in place, and drop
    the widget state (so myst-nb adds no widget JavaScript to the page)."""
    widgets = nb.get("metadata", {}).pop("widgets", None) or {}
    models = (widgets.get(STATE_MIME) or {}).get("state") or {}
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        new = []
        for out in outputs:
            data = out.get("data") or {}
            if VIEW_MIME in data:
                new.extend(static_outputs(data[VIEW_MIME], data.get("text/plain"), models))
            else:
                new.append(out)
        cell["outputs"] = new
