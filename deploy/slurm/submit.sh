#!/bin/bash
# Submit a sharded batchbanana job to Slurm: the array of shards, then the report, which waits
# for every shard to end (afterany: also when some failed, to show why).
#   export BATCHBANANA_API_KEY=...
#   deploy/slurm/submit.sh            # from the folder that holds job.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable "$here/shards.sbatch")
array=${array%%;*}  # "jobid;cluster" on federated clusters
sbatch --dependency="afterany:$array" "$here/report.sbatch"
echo "shards: job $array; report after it"
