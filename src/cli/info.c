// info.c - `frcnn info -m MODEL [--config FILE] [--json]`: a model's configuration and size.
#include "cli.h"
#include "core/alloc.h"
#include "detector/model.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: frcnn info -m MODEL.safetensors [--config FILE.json] [--json]\n"
               "Prints the model's name, classes, architecture and configuration.\n"
               "  -m, --model FILE   weights (safetensors with frcnn.config metadata)\n"
               "  --config FILE      use this config instead of the file's metadata\n"
               "  --json             print the effective config as JSON only\n");
}

int fr_cli_info(int argc, char **argv) {
    const char *model = NULL, *config = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "frcnn info: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!model) {
        usage(stderr);
        return 2;
    }
    fr_model *m;
    fr_err e = {0};
    if (fr_model_load(&m, model, config, &e)) {
        fprintf(stderr, "frcnn info: %s\n", e.msg);
        return 1;
    }
    const fr_config *c = &m->cfg;
    char *js = fr_config_to_json(c);
    if (!js) {
        fprintf(stderr, "frcnn info: out of memory\n");
        fr_model_free(m);
        return 1;
    }
    if (json) {
        printf("%s\n", js);
    } else {
        printf("model:      %s (%s family)\n", c->name, c->family == FR_FAMILY_DETECTRON2 ? "detectron2" : "py-faster-rcnn");
        printf("backbone:   ResNet-%d C4, stem %d, res2..res4 out %d/%d/%d, res5 out %d, stride in %s\n", c->depth,
               m->bb.stem.cout, m->bb.res[0].cout, m->bb.res[1].cout, m->bb.res[2].cout, m->res5.cout,
               c->stride_in_1x1 ? "1x1" : "3x3");
        printf("rpn:        %d anchors per cell, %s, top %d -> NMS %.2f -> %d\n", m->num_anchors,
               c->objectness == FR_OBJ_SIGMOID ? "sigmoid" : "softmax2", c->pre_nms_topk, c->rpn_nms_thresh,
               c->post_nms_topk);
        printf("roi:        %s %dx%d, scale 1/%.0f\n", c->roi_op == FR_ROI_ALIGN ? "RoIAlign" : "RoIPool", c->roi_size,
               c->roi_size, 1.0 / c->spatial_scale);
        printf("input:      %s, short side %d, long side <= %d\n", c->input_rgb ? "RGB" : "BGR", c->min_size, c->max_size);
        printf("weights:    %.1f MB in memory (float32, BN folded); %d unknown tensors ignored\n",
               m->weight_bytes / 1e6, m->unused_tensors);
        printf("classes:    %d:", c->num_classes);
        for (int i = 0; i < c->num_classes; i++) printf("%s%s", i ? ", " : " ", c->classes[i]);
        printf("\nconfig:     %s\n", js);
    }
    fr_free(js);
    fr_model_free(m);
    return 0;
}
