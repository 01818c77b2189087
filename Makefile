# rebuildgate: the two commands a fresh Debian 12 machine (as root) needs are
#   make demo    - the main job on built-in sample data
#   make test    - install what the tests need, then run every test that needs
#                  nothing beside the checkout
# and CI (.ci/run) also runs
#   make conformance - the checks against other projects' published metadata
#                  in ../shared (only beside this checkout; $REBUILDGATE_SHARED
#                  points elsewhere): tests/conformance
# Packages (dist/): make deb, make rpm, make packages (both, from a clean build tree).

PYTHON      ?= /usr/bin/python3
VENV        ?= .venv
VPY         := $(VENV)/bin/python
# Debian packages the library, the front ends and the tests use.  python3-apt
# and python3-dnf import only under /usr/bin/python3, hence the venv below is
# made from it with --system-site-packages.
SYSTEM_PACKAGES := python3 python3-venv python3-pip python3-apt python3-dnf python3-rpm dnf rpm \
                   createrepo-c dpkg-dev apt-utils gnupg fakeroot ca-certificates openssl mount
# What make deb / make rpm build with, and what tests/packaging installs them
# into (mmdebstrap makes the fresh Debian 12 root).
BUILD_PACKAGES := debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
                  python3-build python3-installer lintian rpm mmdebstrap man-db
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DIST        ?= dist
BUILD       ?= build/packages
# The bundle's wheels (packaging/bundle-requirements.txt), fetched once and kept
# here; the builds themselves install them offline.
WHEELS      ?= /var/cache/rebuildgate-build/wheels
WHEEL_TARGET := --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
                --implementation cp --abi cp311 --abi abi3 --abi none
# Packages build with Debian's own tools and /usr/bin/python3, whatever else is on PATH.
SYSTEM_PATH := env PATH=/usr/sbin:/usr/bin:/sbin:/bin
# What a package's build tree holds (plus packaging/).
SOURCES     := pyproject.toml README.md common apt_transport dnf_plugin
PYTEST_ARGS ?=

.PHONY: all deps build-deps venv test conformance demo bench clean wheels deb rpm packages

all: test

deps: build-deps
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build-deps:
	@missing=$$(for p in $(BUILD_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Offline when the pinned files are already here; else from the pip index.  The
# hashes are checked here and again when the packages install them.
wheels:
	mkdir -p $(WHEELS)
	$(PYTHON) -m pip download -q --no-index --find-links $(WHEELS) --require-hashes --no-deps $(WHEEL_TARGET) \
	    -d $(WHEELS) -r packaging/bundle-requirements.txt 2>/dev/null || \
	$(PYTHON) -m pip download -q --require-hashes --no-deps $(WHEEL_TARGET) \
	    -d $(WHEELS) -r packaging/bundle-requirements.txt

# A build tree of the sources only (no venv, caches or earlier builds).
$(BUILD)/%/tree: FORCE
	rm -rf $(BUILD)/$* && mkdir -p $@/wheels
	tar -c --exclude=__pycache__ --exclude='*.egg-info' $(SOURCES) packaging | tar -x -C $@
	cp $(WHEELS)/*.whl $@/wheels/

deb: build-deps wheels $(BUILD)/deb/tree
	cp -r packaging/debian $(BUILD)/deb/tree/debian
	cd $(BUILD)/deb/tree && $(SYSTEM_PATH) dpkg-buildpackage -b -us -uc --no-sign
	mkdir -p $(DIST) && cp $(BUILD)/deb/rebuildgate_$(VERSION)_*.deb $(DIST)/
	lintian --suppress-tags-from-file packaging/lintian-ignored $(DIST)/rebuildgate_$(VERSION)_*.deb || true

rpm: build-deps wheels $(BUILD)/rpm/tree
	mkdir -p $(BUILD)/rpm/SOURCES
	tar -C $(BUILD)/rpm -czf $(BUILD)/rpm/SOURCES/rebuildgate-$(VERSION).tar.gz --transform 's,^tree,rebuildgate-$(VERSION),' tree
	$(SYSTEM_PATH) rpmbuild -bb --define '_topdir $(abspath $(BUILD))/rpm' --define '_dbpath $(abspath $(BUILD))/rpm/db' \
	    packaging/rpm/rebuildgate.spec
	mkdir -p $(DIST) && cp $(BUILD)/rpm/RPMS/*/*rebuildgate-$(VERSION)-*.rpm $(DIST)/

packages: deb rpm

FORCE:

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
	rm -rf $(VENV) build $(DIST) *.egg-info .pytest_cache .hypothesis
