# seiko: `make run` sets up a fresh machine and runs the default job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every install step is pinned by constraints.txt (torch 2.13.0: the CPU build, not a CUDA one).
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
RUN_NAME ?= default-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install run test test-slow bench sweep pretrain pretrain-holo pretrain-molecule pretrain-image bench-docking tensorboard clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	# pytorch-holo (Ehrlich functions) declares numpy<2 and wandb; it needs neither.
	$(PIP) --no-deps pytorch-holo==0.0.5
	# molsets (MOSES): only its data and filter CSVs are read; `import moses` fails on current pandas.
	$(PIP) --no-deps molsets==0.3.1
	touch $@

run: install
	$(VENV)/bin/seiko run_name=$(RUN_NAME)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) experiments/compute.py
	$(PY) experiments/reward_models.py
	$(PY) experiments/support_eps.py
	$(PY) experiments/feedback_efficiency.py

# Docking (slow, never in CI): SEIKO-UCB in 4 rounds of 64 against best-of-256 and mol-ga, 256 DRD2 dockings
# each (AutoDock Vina, ~50 s a molecule on 2 cores: about 10 hours here); resumable, finished runs are skipped.
bench-docking: install
	$(PY) experiments/pmo_benchmark.py --tasks docking --methods ucb best_of_n mol_ga --seeds 0 --budget 256 \
		--per-round 64 64 64 64 --out experiments/runs/docking --results experiments/results/docking

sweep: install
	$(VENV)/bin/seiko -m strategy=greedy,ucb,ts strategy.bonus=0.1,1.0 finetune.kl_pretrained=0.01,0.1

# Rebuilds a committed checkpoint src/seiko/assets/protein_s32_l32_seed$(CHAIN).safetensors (the Ehrlich
# chain of domain.seed=CHAIN: 0, 1 or 2; ~45 min on 2 cores, ~65 min with two at once on one thread each).
CHAIN ?= 0
pretrain: install
	$(PY) -m seiko.pretrain domain.seed=$(CHAIN) max_steps=20000 eval_every=1000 trainer.enable_progress_bar=false

# Rebuilds src/seiko/assets/protein_s32_l256_seed0.safetensors: the chain of holo-bench's own size (32 states,
# length 256; the motifs are the task's, not the checkpoint's). A sample costs 256 denoiser passes, so the
# feasibility checks use 200 samples: docs/protein-benchmark.md, 'The pretrained checkpoint'.
pretrain-holo: install
	$(PY) -m seiko.pretrain domain.dim=256 domain.motif_length=8 domain.quantization=8 domain.num_motifs=4 \
		pretrain.batch_size=32 max_steps=12000 eval_every=2000 eval_num=200 eval_batches=5 \
		trainer.enable_progress_bar=false

# Rebuilds src/seiko/assets/molecule_moses_selfies_l56.safetensors (MOSES as SELFIES, left to right, causal
# denoiser; 84 min on one CPU thread; trainer=gpu on a GPU): docs/molecule-benchmark.md, 'Pretraining'.
pretrain-molecule: install
	$(PY) -m seiko.pretrain domain=molecule max_steps=8000 eval_every=1000 trainer.enable_progress_bar=false

# Rebuilds src/seiko/assets/image_digits/ (the CPU image default: a small text-to-image UNet on scikit-learn's
# digits and its frozen scorer; ~34 min on one CPU thread): docs/image-default.md.
pretrain-image: install
	OMP_NUM_THREADS=1 $(PY) -m seiko.image.pretrain --out src/seiko/assets/image_digits --steps 3000

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf outputs multirun experiments/runs
