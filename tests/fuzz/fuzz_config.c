// fuzz_config.c - libFuzzer target: the model config parser and its JSON writer.
#include "core/alloc.h"
#include "core/config.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fr_alloc_init();
    fr_config c;
    fr_err e;
    if (fr_config_parse(&c, (const char *)data, size, &e)) return 0;
    char *js = fr_config_to_json(&c);
    if (js) {
        fr_config d;
        if (fr_config_parse(&d, js, strlen(js), &e) == FR_OK) fr_config_free(&d);
        fr_free(js);
    }
    fr_config_free(&c);
    return 0;
}
