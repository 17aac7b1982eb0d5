# frcnn - Faster R-CNN (ResNet C4) in C.  `make`, `make test`, `make run`, `make bench`.
# SAN=1 builds everything under ASan+UBSan into build/san.  Needs Debian 12 packages
# (tools/deps.sh installs them as root, or prints the apt-get line).

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build/san
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT ?= -O1 -g
else
BUILD ?= build
SANFLAGS =
OPT ?= -O3 -g
endif

SHELL = /bin/bash
CC ?= cc
# OpenBLAS's OpenMP build: its threads and ours (OpenMP loops around the GEMMs) share one
# pool instead of two pools spinning against each other on the same cores.
BLAS_DIR = /usr/lib/x86_64-linux-gnu/openblas-openmp
PKGS = openblas libcjson libmicrohttpd expat
CFLAGS ?= $(OPT)
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC -pthread -fopenmp $(SANFLAGS) \
          -Isrc $(shell PKG_CONFIG_PATH=$(BLAS_DIR)/pkgconfig pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += -pthread -fopenmp $(SANFLAGS) -Wl,-rpath,$(BLAS_DIR)
LDLIBS += $(shell PKG_CONFIG_PATH=$(BLAS_DIR)/pkgconfig pkg-config --libs $(PKGS) 2>/dev/null || echo -lopenblas -lcjson -lmicrohttpd -lexpat) -lm

LIB_DIRS = src/core src/backbone src/rpn src/roi src/head src/detector src/server src/eval
LIB_SRC = $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
# The GEMM is built optimised in every build: at ASan's -O1 its micro-kernel's 24 accumulators
# would live in memory (gemm.c also exempts just that kernel from the sanitizers).
$(BUILD)/obj/src/core/gemm.o: OPT = -O3 -g
CLI_SRC = $(wildcard src/cli/*.c)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FIXTURES = build/fixtures
PY = /usr/bin/python3

.PHONY: all deps test test-deps fixtures bench run clean format fuzz docker docker-test loadtest weights
all: deps $(BUILD)/frcnn

deps:
	@tools/deps.sh build

$(BUILD)/libfrcnn.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/frcnn: $(CLI_OBJ) $(BUILD)/libfrcnn.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/src/server/page.o: src/server/page.html docs/api/openapi.yaml

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libfrcnn.a tests/harness.h tests/cli.h tests/fixture.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libfrcnn.a $(LDFLAGS) $(LDLIBS)

test-deps:
	@tools/deps.sh test

# Golden data from the PyTorch reference (tools/reference), regenerated when the tools change.
fixtures: $(FIXTURES)/.stamp
$(FIXTURES)/.stamp: $(wildcard tools/reference/*.py) tools/voc_eval_ref.py tools/demo_eval.py \
		tools/shapes.py models/demo.safetensors | test-deps
	@mkdir -p $(FIXTURES)
	$(PY) tools/reference/make_fixtures.py --out $(FIXTURES)
	@touch $@

test: test-deps $(BUILD)/frcnn $(TEST_BIN) fixtures
	@BUILD=$(BUILD) FIXTURES=$(FIXTURES) tests/run.sh $(TEST_BIN)

bench: deps $(BUILD)/frcnn fixtures
	@tools/bench.sh $(BUILD)/frcnn

run: deps $(BUILD)/frcnn
	$(BUILD)/frcnn serve -m models/demo.safetensors --host 127.0.0.1 --port 8080

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(TEST_SRC) $(wildcard src/*/*.h tests/*.h)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# Docker image frcnn:latest (docker/Dockerfile); tools/docker.sh starts a private dockerd
# when none answers (see README).
docker:
	tools/docker.sh build

docker-test:
	tools/docker.sh test

loadtest: $(BUILD)/frcnn
	tools/loadtest.sh $(BUILD)/frcnn

# libFuzzer targets (clang-14) under ASan+UBSan: tests/fuzz/fuzz_*.c, seeds in tests/fuzz/corpus/<name>.
FUZZ_SECONDS ?= 60
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_CFLAGS = -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unknown-pragmas -pthread -Isrc \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              $(shell PKG_CONFIG_PATH=$(BLAS_DIR)/pkgconfig pkg-config --cflags $(PKGS) 2>/dev/null)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRC) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS) -Wl,-rpath,$(BLAS_DIR)

fuzz: $(FUZZ_BIN)
	@for b in $(FUZZ_BIN); do n=$${b#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus/$$n; \
	  echo "fuzz $$n: $(FUZZ_SECONDS) s"; \
	  $$b -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
	    build/fuzz/corpus/$$n tests/fuzz/corpus/$$n 2>&1 | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|crash-" ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; done

# Downloads detectron2's COCO faster_rcnn_R_101_C4_3x and VOC faster_rcnn_R_50_C4 checkpoints
# (internet needed; md5 prefix checked, sha256 printed) and converts them into models/.
weights: $(BUILD)/frcnn
	FRCNN=$(BUILD)/frcnn PY=$(PY) tools/weights.sh
