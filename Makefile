# Two commands are all the set-up there is:
#   make demo   install into .venv (when missing) and run train -> evaluate -> export on the embedded synthetic dataset
#   make test   install into .venv (when missing) and run the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean-venv

install: $(STAMP)

# requirements.txt is a complete, pinned environment installed with --no-deps:
# paddleclas 2.6.0's metadata pins numpy==1.24.4 and opencv-python 4.6, which
# would put a second cv2 next to opencv-python-headless (see docs/install.md).
$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.txt
	$(VENV)/bin/python -c "import metric_learning, paddle, cv2, paddleclas.ppcls.arch.backbone"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m metric_learning.demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
