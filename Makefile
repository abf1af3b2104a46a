# Every target sets up what it needs first (idempotent): Debian packages, a virtual
# environment in .venv, and mbtest installed into it in editable mode.

VENV     ?= .venv
PY       := $(VENV)/bin/python
MBTEST   := $(VENV)/bin/mbtest
DEB_PKGS := iptables nftables tcpdump tshark libnetfilter-queue-dev gcc iproute2 procps python3-venv chromium \
            qemu-system-x86 busybox-static zstd
STAMP    := $(VENV)/.mbtest-installed

NATIVE   := mbtest/middlebox/native/mbtest-nfq-fast

.PHONY: setup system demo selfcheck test smoke unit lint bench stability fuzz clean

setup: system $(STAMP) $(NATIVE)

# The middlebox engine's fast path for every-packet behaviours (libnetfilter_queue).
$(NATIVE): mbtest/middlebox/native/nfq_fast.c
	gcc -O2 -Wall -Wextra -o $@ $< -lnetfilter_queue -lnfnetlink

# Debian packages: installed only when one is missing; `apt-get update` first.
system:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The main job: the default local matrix, results under reports/latest/.
# Deviations are findings, not failures: only a harness error (exit 2) fails the target.
demo: setup
	@$(MBTEST) matrix -j 2; status=$$?; \
	echo "results: $$(readlink -f reports/latest)/results.jsonl"; \
	echo "report:  $$(readlink -f reports/latest)/report.html"; \
	[ $$status -le 1 ]

# The kernel self-check: every MPTCP option Linux sends, decoded and verified.
selfcheck: setup
	$(MBTEST) selfcheck

# The whole test suite: unit tests, then the real-kernel namespace tests (need root), then
# the package as a user installs it (a wheel in a fresh virtual environment).
test: setup
	$(VENV)/bin/ruff check mbtest tests
	$(PY) -m pytest
	PYTHON=$(PY) .ci/wheel-smoke

# Only the wheel smoke test.
smoke: setup
	PYTHON=$(PY) .ci/wheel-smoke

unit: setup
	$(PY) -m pytest tests/unit

lint: setup
	$(VENV)/bin/ruff check mbtest tests
	$(VENV)/bin/ruff format --check mbtest tests

# The long fuzz run: 1,000,000 mutated packets over every userspace behaviour, the kernel
# observer and the probe's reply and quote handling, 100,000 mutated capture files.
fuzz: setup
	$(PY) -m tests.fuzz.run --packets 1000000 --captures 100000 --output reports/fuzz.json

bench: setup
	$(PY) -m tests.bench.run --output reports/bench.json

# Five default matrices in a row: every cell's verdict must be the same five times.
stability: setup
	$(PY) -m tests.bench.run --only stability --output reports/stability.json

clean:
	-$(MBTEST) cleanup
	rm -f $(NATIVE)
	rm -rf $(VENV) .pytest_cache .ruff_cache
