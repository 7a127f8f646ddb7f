#!/bin/bash
# nemoflow step 'train', key 0123456789ab, run 20261126-000000-deadbeef
#SBATCH --job-name=team-train-0123456789ab-deadbeef
#SBATCH --output=/lustre/alice/jobs/exp_1/train-0123456789ab-deadbeef/nemoflow.log
#SBATCH --account=llm
#SBATCH --partition=batch
#SBATCH --qos=high
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=04:00:00
#SBATCH --exclusive
#SBATCH --comment="nemoflow golden"
#SBATCH --requeue
#SBATCH --dependency=afterok:1001:1002
#SBATCH --kill-on-invalid-dep=yes

set -eo pipefail
export NCCL_DEBUG=INFO
export NOTE='two words'
export PYTHONPATH=/lustre/alice/jobs/.nemoflow/runtime-aa
cd /lustre/alice/jobs/.nemoflow/code-0011223344556677
nodes=( $(scontrol show hostnames "$SLURM_JOB_NODELIST") )
head_node=${nodes[0]}
head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | cut -d" " -f1)
srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --container-image=nvcr.io/nvidia/pytorch:24.01-py3 --container-mounts=/lustre/data:/data,/lustre/alice/jobs/exp_1/train-0123456789ab-deadbeef:/lustre/alice/jobs/exp_1/train-0123456789ab-deadbeef python -m torch.distributed.run --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=$head_node_ip:29500 --rdzv_id=$SLURM_JOB_ID -m nemoflow.run_step /lustre/alice/jobs/exp_1/train-0123456789ab-deadbeef/nemoflow-job.json
