"""Orchestration of one ``sid run``: plan with the launcher, build the model and the components once,
train and/or evaluate, write the run files. Nothing here is imported by `sid --help` or
`sid plugins list`; jax is imported only when a job really runs.

- `launch`: the launcher's plan -> in-process job or the executor;
- `executor`: runs a `LaunchPlan`'s argv steps (sequential or parallel, ``--dry-run``);
- `distributed`: the ``jax.distributed`` env contract of multi-process launchers;
- `components`: every selected plugin component built once per run;
- `assemble`: tokenizer + SID vocabulary + model + mesh (`ModelBundle`);
- `checkpoints`: open a checkpoint by URI through whichever store serves its scheme;
- `job`: one job in this process (train / eval / train_eval) and its outputs;
- `rundir`: the run directory's files;
- `export`, `report`: reading finished runs back (HF export, plots and seed statistics).
"""
