# The README's two commands: `make demo` and `make test`. Both create the venv when it is missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
OUT     ?= out/demo
CHECKPOINT ?=
INSTRUCTION ?=
RANDOM_WEIGHTS ?=
export MUJOCO_GL ?= egl
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test lint bench closed-loop lerobot-compat clean

venv: $(STAMP)

# setup.py also generates msg/ + srv/ with rosidl (cmake), hence the interface files as prerequisites.
$(STAMP): requirements.txt requirements-ros.txt setup.py CMakeLists.txt package.xml $(wildcard msg/*.msg srv/*.srv)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-ros.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/twinbrain-demo --out $(OUT) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) \
		$(if $(INSTRUCTION),--instruction "$(INSTRUCTION)") $(if $(RANDOM_WEIGHTS),--random-weights)

test: $(STAMP)
	$(PY) -m pytest test

lint: $(STAMP)   # ruff is pinned in requirements.txt; rules in pyproject.toml
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/twinbrain-bench inference --preset tiny

closed-loop: $(STAMP)   # a benchmark (~36 min on 2 cores): record -> fine-tune -> deploy -> success rates
	$(VENV)/bin/twinbrain-bench closed-loop --out out/closed-loop

# lerobot's own tools on datasets written here (a sim recording; a bag import with jittered and dropped
# frames), then this project's check on what those tools wrote. LEROBOT_PY: a separate venv's python with
# lerobot (scripts/lerobot_compat.py says how); about 5 min on 2 cores.
LEROBOT_PY ?=
COMPAT := out/lerobot-compat
lerobot-compat: $(STAMP)
	@test -n "$(LEROBOT_PY)" || { echo "set LEROBOT_PY=<python of a venv with lerobot>; see scripts/lerobot_compat.py"; exit 2; }
	rm -rf $(COMPAT) && mkdir -p $(COMPAT)
	$(VENV)/bin/twinbrain-record sim --episodes 3 --out $(COMPAT)/sim --image-size 64 64 --task touch
	$(VENV)/bin/twinbrain-record sim-bag $(COMPAT)/bag-source --episodes 2 --image-size 64 64 --jitter 0.004 \
		--drop 30 31 32 33 34 35 60
	$(VENV)/bin/twinbrain-record bag $(COMPAT)/bag-source --out $(COMPAT)/bag --image-size 64 64 \
		--camera front=/camera/front/image_raw --camera wrist=/camera/wrist/image_raw \
		--instruction-topic /instruction --split topic:/episode
	HF_LEROBOT_HOME=$(abspath $(COMPAT))/home $(LEROBOT_PY) scripts/lerobot_compat.py $(COMPAT)/edits \
		$(COMPAT)/sim $(COMPAT)/bag | tail -1
	for d in $$(find $(COMPAT)/edits -name info.json -path '*/meta/*' | xargs -n1 dirname | xargs -n1 dirname); do \
		$(VENV)/bin/twinbrain-record check $$d || exit 1; done

clean:
	rm -rf out build install log *.egg-info twinbrain_ros/msg twinbrain_ros/srv twinbrain_ros/*.so
