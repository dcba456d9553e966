"""pruneforget: prune a text-to-image diffusion model, fine-tune it and make it forget, reproducibly.

    snakemake --cores all                                          # tiny scale (config/config.yaml), CPU
    snakemake --cores all --configfile config/micro.yaml           # the minutes-long test run
    snakemake --profile slurm --configfile config/sd21.yaml        # paper scale on a SLURM cluster

The default target is every table and figure of the scale. Snakemake executes and DVC records:
dvc.yaml is generated from this DAG (`python workflow/scripts/dvc_sync.py generate`, one stage per
rule), and a successful run commits its outputs to DVC; `dvc repro` builds the same.
"""

import os
import re
import sys

from snakemake.utils import min_version

# The DAG imports the package (config checks, figure inputs) from the checked-out source, like
# the jobs do (shell.prefix below), not from whatever copy happens to be installed.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from pruneforget.config import ConfigError, read_config_file, restore_yaml11_strings, validate_config
from pruneforget.variants import scales

min_version("8.20")


# Each config file is complete. A --configfile replaces the default instead of being merged into
# it: Snakemake merges nested sections, which would mix the tiny world's keys into COCO's.
if not workflow.config_settings.configfiles:
    try:  # a YAML error named by file and line (a --configfile is parsed by Snakemake before this runs)
        read_config_file("config/config.yaml")
    except ConfigError as exc:
        sys.exit(f"Config error: {exc}")

    configfile: "config/config.yaml"


# Reject a bad config before any job runs: the schema (types, units, unknown keys), then the
# cross-field checks a schema cannot express (removed styles exist, local model paths exist, ...).
# The package's validate_config, not Snakemake's `validate`: the same schema, but its message names
# the key first ("unknown key `finetune.stpes` (a typo of `steps`?)") instead of after a dump of
# the whole schema.
try:
    restore_yaml11_strings(config)  # after `dvc exp run -S`, a bare `no` (see the function)
    validate_config(config)
except ConfigError as exc:
    sys.exit(f"Config error: {exc}")


# A DVC stage (`dvc repro`) must not overwrite outputs that a run with another config made and
# DVC has not recorded: workflow/scripts/dvc_sync.py lists them and says why.
if "DVC_STAGE" in os.environ:
    sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))
    from dvc_sync import refusal

    if reason := refusal():
        sys.exit(reason)


# One scale per run: a path of another scale (results/sd21/... under the tiny config) must not be
# built from this config's values, so the {scale} wildcard only matches the configured scale and
# its generalisation variants (`{scale}-{variant}`, whose jobs read the overlaid config: rules/common.smk).
wildcard_constraints:
    scale="|".join(re.escape(s) for s in scales(config)),
    model=r"[^/]+",
    promptset=r"[^/]+",

# Jobs import the package from the checked-out source (what DVC hashes as a dependency), also
# inside conda environments, whose files list only the dependencies.
shell.prefix("set -euo pipefail; export PYTHONPATH=src${{PYTHONPATH:+:$PYTHONPATH}}; ")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/sample.smk"
include: "rules/score.smk"
include: "rules/figures.smk"
include: "rules/unlearn.smk"


# `snakemake --report report.html`: every figure under its part of the paper, with the config.
report: "workflow/report/workflow.rst"
include: "rules/finetune.smk"
include: "rules/prune.smk"
include: "rules/bilevel.smk"


localrules:
    all,
    bilevel_sweep,


rule all:
    """Everything this scale builds (see final_targets in rules/common.smk): every table and figure."""
    input:
        final_targets(),


onsuccess:
    # Record in DVC what this run made, so `dvc repro` does not redo it (a run with another config
    # is named, and listed as not recorded). Skipped when DVC itself runs a stage (it sets
    # DVC_STAGE for stage commands and records the result on its own), and by `dvc_sync.py pull`.
    if "DVC_STAGE" not in os.environ and "PRUNEFORGET_NO_DVC_COMMIT" not in os.environ:
        run_config = [os.path.relpath(p, workflow.basedir) for p in workflow.config_settings.configfiles][:1]
        shell("python workflow/scripts/dvc_sync.py commit" + "".join(f" --run-configfile {c}" for c in run_config))
