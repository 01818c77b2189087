# rebuildgate: the two commands a fresh Debian 12 machine (as root) needs are
#   make demo    - the main job on built-in sample data
#   make test    - install what the tests need, then run every test that needs
#                  nothing beside the checkout
# and CI (.ci/run) also runs
#   make conformance - the checks against other projects' published metadata
#                  in ../shared (only beside this checkout; $REBUILDGATE_SHARED
#                  points elsewhere): tests/conformance

PYTHON      ?= /usr/bin/python3
VENV        ?= .venv
VPY         := $(VENV)/bin/python
# Debian packages the library, the front ends and the tests use.  python3-apt
# and python3-dnf import only under /usr/bin/python3, hence the venv below is
# made from it with --system-site-packages.
SYSTEM_PACKAGES := python3 python3-venv python3-pip python3-apt python3-dnf python3-rpm dnf rpm \
                   createrepo-c dpkg-dev apt-utils gnupg fakeroot ca-certificates openssl
PYTEST_ARGS ?=

.PHONY: all deps venv test conformance demo bench clean

all: test

deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

# tests/conftest.py keeps tests/conformance out of a plain pytest run too.
test: venv
	$(VPY) -m pytest --ignore=tests/conformance $(PYTEST_ARGS)

conformance: venv
	$(VPY) -m pytest tests/conformance $(PYTEST_ARGS)

demo: venv
	$(VPY) demo/run.py

bench: venv
	$(VPY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
