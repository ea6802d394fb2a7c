"""Models: checkpoints with metrics and lineage, training curves, confusion matrix, accuracy
heatmap (pre-training x degree), and a form that starts a training run with a progress bar."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from ui.common import user_errors
from xai_core.metrics.order import order_columns


def checkpoint_frame() -> pd.DataFrame:
    """All checkpoints with a ``lineage`` column (pretrain → TL → FT ids)."""
    from models.checkpoints import list_checkpoints

    rows = list_checkpoints()
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    by_id = {r["id"]: r for r in rows}

    def lineage(row_id: int) -> str:
        chain, seen, cur = [], set(), by_id.get(row_id)
        while cur is not None and cur["id"] not in seen:
            seen.add(cur["id"])
            chain.append(f"{cur['phase']} #{cur['id']}")
            cur = by_id.get(cur["parent_id"]) if cur["parent_id"] else None
        return " → ".join(reversed(chain))

    frame["lineage"] = [lineage(i) for i in frame["id"]]
    return frame


def dataset_names() -> list[str]:
    from sqlalchemy import select

    from db import Dataset, session_scope

    with session_scope() as session:
        return list(session.scalars(select(Dataset.name).order_by(Dataset.id)).all())


st.title("Models")
st.caption("Checkpoints of every pre-training source and fine-tuning degree, their test metrics and lineage.")

with user_errors():
    frame = checkpoint_frame()
    if frame.empty:
        st.info(
            "No checkpoints yet. Train the demo grid with "
            "`xaudit train-grid --dataset mri-lesions --archs vgg16 --width 0.125 --pretrain natural,mri` "
            "or one model with `xaudit train --dataset mri-lesions --arch vgg16 --width 0.125 --degree all`, "
            "or use the form below."
        )
    else:
        st.subheader("Checkpoints")
        cols = ["id", "name", "arch", "width", "pretrain", "degree", "phase", "epoch", "lineage", "dataset",
                "accuracy", "balanced_accuracy", "roc_auc", "train_time_s", "device"]
        st.dataframe(frame[cols], hide_index=True, width="stretch")

        trained = frame[frame["phase"].isin(["tl", "ft"]) & frame["accuracy"].notna()]
        if not trained.empty:
            st.subheader("Test accuracy: pre-training × fine-tuning degree")
            arch_choice = st.selectbox("Architecture", sorted(trained["arch"].unique()), key="heat_arch")
            sub = trained[trained["arch"] == arch_choice].sort_values("id").groupby(["pretrain", "degree"]).last()
            heat = order_columns(sub["accuracy"].unstack("degree"))
            fig = px.imshow(heat, text_auto=".3f", color_continuous_scale="Viridis", zmin=0.5, zmax=1.0,
                            labels={"x": "degree", "y": "pre-training", "color": "accuracy"}, aspect="auto")
            st.plotly_chart(fig, width="stretch")
            st.table(heat.round(3))  # a static table: a second data grid costs ~0.3 s per page view

        st.subheader("Checkpoint detail")
        options = {f"#{r.id} {r.name}": int(r.id) for r in frame.itertuples()}
        label = st.selectbox("Checkpoint", list(options), index=len(options) - 1, key="detail")
        row = frame[frame["id"] == options[label]].iloc[0]
        st.markdown(f"**Lineage:** {row['lineage']}")
        from db import Checkpoint, session_scope

        with session_scope() as session:
            ck = session.get(Checkpoint, int(row["id"]))
            history, metrics, class_names_meta = list(ck.history or []), dict(ck.metrics or {}), ck.num_classes
        c1, c2, c3 = st.columns(3)
        c1.metric("Accuracy", f"{metrics['accuracy']:.3f}" if metrics.get("accuracy") is not None else "-")
        c2.metric("Balanced accuracy",
                  f"{metrics['balanced_accuracy']:.3f}" if metrics.get("balanced_accuracy") is not None else "-")
        c3.metric("ROC-AUC", f"{metrics['roc_auc']:.3f}" if metrics.get("roc_auc") is not None else "-")
        if history and "epoch" in history[0]:
            curves = pd.DataFrame(history).melt("epoch", ["train_loss", "val_loss", "train_acc", "val_acc"])
            st.plotly_chart(px.line(curves, x="epoch", y="value", color="variable", markers=True,
                                    title="Training curves"), width="stretch")
        elif history and "step" in history[0]:
            st.plotly_chart(px.line(pd.DataFrame(history), x="step", y=["loss", "acc"], markers=True,
                                    title="Pre-training (pretext task)"), width="stretch")
        if metrics.get("confusion_matrix"):
            import json
            from pathlib import Path

            side = Path(str(row["path"])).with_suffix(".json")
            names = json.loads(side.read_text()).get("class_names") if side.is_file() else None
            names = names or [str(i) for i in range(class_names_meta)]
            cm = pd.DataFrame(metrics["confusion_matrix"], index=names, columns=names)
            st.plotly_chart(px.imshow(cm, text_auto=True, labels={"x": "predicted", "y": "true"},
                                      title="Confusion matrix (test split)", color_continuous_scale="Blues"),
                            width="stretch")

    st.subheader("Train a model")
    names = dataset_names()
    if not names:
        st.info("No dataset yet. Build the benchmark first: `xaudit data build --name mri-lesions`.")
    else:
        from models import DEGREES, list_architectures
        from models.pretraining import list_pretraining_sources

        with st.form("train"):
            ds = st.selectbox("Dataset", names)
            a1, a2, a3 = st.columns(3)
            arch = a1.selectbox("Architecture", list_architectures(), index=list_architectures().index("vgg16"))
            pre = a2.selectbox("Pre-training", list_pretraining_sources(),
                               index=list_pretraining_sources().index("natural"))
            degree = a3.selectbox("Degree", list(DEGREES), index=len(DEGREES) - 1)
            b1, b2, b3 = st.columns(3)
            protocol = b1.selectbox("Protocol", ["single", "tl-ft"])
            width = b2.number_input("Width (vgg16)", 0.0625, 1.0, 0.125, step=0.0625)
            epochs = b3.number_input("Epochs", 1, 200, 8)
            submitted = st.form_submit_button("Train")
        if submitted:
            from models.grid import train

            bar = st.progress(0.0, text="starting")

            def report(done: int, total: int, message: str) -> None:
                bar.progress(min(1.0, done / total) if total else 0.0, text=message[:120])

            infos = train(ds, arch=arch, pretrain=pre, degree=degree, protocol=protocol,
                          width=float(width) if arch == "vgg16" else 1.0, epochs=int(epochs), progress=report)
            st.success("Saved " + ", ".join(f"#{i.id} {i.name}" for i in infos))
