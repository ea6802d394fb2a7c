"""Sweeps: a study file (:mod:`.study`) expanded into tasks (:mod:`.plan`) run stage by stage by
an executor (:mod:`.executors`: in this process, or on a Ray cluster), progress in the database
(:mod:`.tracking`)."""

from xai_core.sweep.executors import EXECUTORS, SweepResult, run_sweep
from xai_core.sweep.plan import STAGES, StagePlan, Task, plan_stage, plan_study
from xai_core.sweep.study import Study, StudyError, load_study, parse_study

__all__ = ["EXECUTORS", "STAGES", "StagePlan", "Study", "StudyError", "SweepResult", "Task", "load_study",
           "parse_study", "plan_stage", "plan_study", "run_sweep"]
