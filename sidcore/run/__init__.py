"""Orchestration of one ``sid run``: plan with the launcher, build the model and the components once,
train and/or evaluate, write the run files. Nothing here is imported by `sid --help` or
`sid plugins list`; jax is imported only when a job really runs.

- `launch`: the launcher's plan -> in-process job or the executor;
- `executor`: runs a `LaunchPlan`'s argv steps (sequential or parallel, ``--dry-run``);
- `distributed`: the ``jax.distributed`` env contract of multi-process launchers;
- `components`: every selected plugin component built once per run;
- `assemble`: tokenizer + SID vocabulary + model + mesh (a `sidcore.model.bundle.ModelBundle`);
- `checkpoints`: open a checkpoint by URI through whichever store serves its scheme;
- `job`: one job in this process (train / eval / train_eval / rl) and its outputs;
- `rl_job`: the ``rl`` run mode inside a job;
- `weights`: which weights an eval-only run scores;
- `identity`: the settings fingerprint every checkpoint records;
- `preflight`: the checks ``--dry-run`` makes;
- `rundir`: the run directory's files and locks.

Reading finished runs back lives in its own packages: `sidcore.export` (HF export) and
`sidcore.report` (the table, seed statistics, plots).
"""
