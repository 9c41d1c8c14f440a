# The README's two commands: `make demo` and `make test`. Both create the venv when it is missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
OUT     ?= out/demo
CHECKPOINT ?=
export MUJOCO_GL ?= egl
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test lint bench closed-loop clean

venv: $(STAMP)

# setup.py also generates msg/ + srv/ with rosidl (cmake), hence the interface files as prerequisites.
$(STAMP): requirements.txt requirements-ros.txt setup.py CMakeLists.txt package.xml $(wildcard msg/*.msg srv/*.srv)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-ros.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/twinbrain-demo --out $(OUT) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

test: $(STAMP)
	$(PY) -m pytest test

lint: $(STAMP)   # ruff is pinned in requirements.txt; rules in pyproject.toml
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/twinbrain-bench inference --preset tiny

closed-loop: $(STAMP)   # a benchmark (~36 min on 2 cores): record -> fine-tune -> deploy -> success rates
	$(VENV)/bin/twinbrain-bench closed-loop --out out/closed-loop

clean:
	rm -rf out build install log *.egg-info twinbrain_ros/msg twinbrain_ros/srv twinbrain_ros/*.so
