// fuzz_voc_xml.c - libFuzzer target: VOC annotation XML (expat, entity defences, limits).
#include "eval/voc.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fr_voc_limits lim;
    fr_voc_limits_default(&lim);
    fr_voc_annotation a;
    fr_err e;
    if (fr_voc_annotation_parse(&a, (const char *)data, size, &lim, &e) == FR_OK) fr_voc_annotation_free(&a);
    fr_voc_imageset s;
    if (fr_voc_imageset_parse(&s, (const char *)data, size, &lim, &e) == FR_OK) fr_voc_imageset_free(&s);
    return 0;
}
