# dfxdp: set-up, build and test commands. Run as root on Debian 12 / Ubuntu 22.04+.
# `make demo` and `make test` install everything they need (apt packages, a venv, the kernels).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := clang llvm libbpf-dev bpftool iproute2 ethtool etcd-server etcd-client \
	openvswitch-switch iptables iperf3 tcpdump iputils-ping traceroute netcat-openbsd nmap dnsutils \
	curl dnsmasq-base dnsperf unbound isc-dhcp-client busybox prometheus linux-libc-dev libelf-dev pkg-config gcc \
	python3-venv python3-dev haproxy nginx-light wrk

.PHONY: all deps venv bpf test demo clean

all: bpf

# apt packages: install only what is missing, so repeated runs stay fast and offline-friendly.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# Debian's packages start daemons on install where systemd runs; our tests start their own.
	-@systemctl stop etcd openvswitch-switch prometheus unbound haproxy nginx 2>/dev/null || true

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

# Compile bpf/*.c and the libbpf binding (only what changed is rebuilt).
bpf: venv
	$(PY) -m dfxdp.build

test: bpf
	$(PY) -m pytest -q tests

demo: bpf
	$(VENV)/bin/dfxdp demo

clean:
	rm -rf $(VENV) build *.egg-info dfxdp/_bpf dfxdp/_libbpf*.so
