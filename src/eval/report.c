// report.c - presenting an evaluation: the JSON file, the per-class table and the SVG
// precision-recall plots (voc.h).
#include "core/alloc.h"
#include "voc.h"
#include "voc_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

// The shortest %g text that reads back as v (like Python's repr), or null.
static void json_num(FILE *f, double v) {
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, f);
}

void fr_voc_write_json(FILE *f, const fr_voc_dataset *ds, const fr_voc_eval_result *r) {
    fputs("{", f);
    for (int m = 0; m < 2; m++) {
        fputs(m ? ",\n \"10\": {" : "\"07\": {", f);
        for (int c = 0; c < r->num_classes; c++) {
            fputs(c ? ", " : "", f);
            json_str(f, ds->classes[c]);
            fputs(": ", f);
            json_num(f, m ? r->cls[c].ap10 : r->cls[c].ap07);
        }
        fputs(", \"mAP\": ", f);
        json_num(f, m ? r->map10 : r->map07);
        fputs("}", f);
    }
    fputs("}\n", f);
}

static void pct(FILE *f, double v) {
    if (isnan(v)) fprintf(f, " %7s", "nan");
    else fprintf(f, " %7.2f", 100.0 * v);
}

void fr_voc_print_table(FILE *f, const fr_voc_dataset *ds, const fr_voc_eval_result *r) {
    int w = 12;
    for (int c = 0; c < r->num_classes; c++) {
        int l = (int)strlen(ds->classes[c]);
        if (l > w && l < 40) w = l;
    }
    fprintf(f, "%-*s %7s %7s %7s %8s %7s %8s\n", w, "class", "AP07", "AP10", "npos", "dets", "TP",
            "FP");
    long npos = 0, nd = 0, tp = 0, fp = 0;
    for (int c = 0; c < r->num_classes; c++) {
        const fr_voc_class_result *k = &r->cls[c];
        fprintf(f, "%-*.40s", w, ds->classes[c]);
        pct(f, k->ap07);
        pct(f, k->ap10);
        fprintf(f, " %7ld %8ld %7ld %8ld%s\n", k->npos, k->ndet, k->tp, k->fp,
                r->has_file && !r->has_file[c] ? "  (no results file)" : "");
        npos += k->npos;
        nd += k->ndet;
        tp += k->tp;
        fp += k->fp;
    }
    fprintf(f, "%-*s", w, "mAP");
    pct(f, r->map07);
    pct(f, r->map10);
    fprintf(f, " %7ld %8ld %7ld %8ld\n", npos, nd, tp, fp);
    char m07[32], m10[32];
    snprintf(m07, sizeof m07, isnan(r->map07) ? "nan" : "%.4f", r->map07);
    snprintf(m10, sizeof m10, isnan(r->map10) ? "nan" : "%.4f", r->map10);
    fprintf(f, "mAP VOC07 11-point: %s   VOC2010+ area: %s   (images: %d listed, %d scored, %d "
               "failed)\n",
            m07, m10, r->images_listed, r->images_scored, r->images_failed);
}

// ---------------------------------------------------------------- SVG

enum { PW = 480, PH = 400, ML = 60, MT = 40, MR = 20, MB = 50 }; // plot size and margins

static double sx(double rec) { return ML + rec * PW; }
static double sy(double prec) { return MT + (1.0 - prec) * PH; }

static void svg_plot(FILE *f, const char *name, const fr_voc_class_result *k) {
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            ML + PW + MR, MT + PH + MB);
    fputs("<text x=\"", f);
    fprintf(f, "%d\" y=\"24\" font-size=\"15\">", ML);
    for (const char *p = name; *p; p++) { // XML-escape the class name
        if (*p == '<') fputs("&lt;", f);
        else if (*p == '>') fputs("&gt;", f);
        else if (*p == '&') fputs("&amp;", f);
        else fputc(*p, f);
    }
    char a07[16], a10[16];
    snprintf(a07, sizeof a07, isnan(k->ap07) ? "nan" : "%.2f", 100.0 * k->ap07);
    snprintf(a10, sizeof a10, isnan(k->ap10) ? "nan" : "%.2f", 100.0 * k->ap10);
    fprintf(f, ": AP07 %s  AP10 %s  (npos %ld, dets %ld, TP %ld, FP %ld)</text>\n", a07, a10,
            k->npos, k->ndet, k->tp, k->fp);
    for (int i = 0; i <= 10; i++) { // grid and ticks
        double t = i / 10.0;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.1f</text>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
                sx(t), MT, sx(t), MT + PH, ML, sy(t), ML + PW, sy(t), sx(t), MT + PH + 16, t,
                ML - 6, sy(t) + 4, t);
    }
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">recall</text>\n"
            "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">"
            "precision</text>\n",
            ML, MT, PW, PH, ML + PW / 2, MT + PH + 38, MT + PH / 2, MT + PH / 2);
    if (k->npos == 0 || k->ndet == 0) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n</svg>\n",
                ML + PW / 2, MT + PH / 2, k->npos == 0 ? "no positives" : "no detections");
        return;
    }
    // the raw curve (one point per pixel column change), then the interpolated envelope
    fputs("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.2\" points=\"", f);
    double lx = -1, ly = -1;
    for (long d = 0; d < k->ndet; d++) {
        double x = sx(k->rec[d]), y = sy(k->prec[d]);
        if (d && d + 1 < k->ndet && fabs(x - lx) < 0.5 && fabs(y - ly) < 0.5) continue;
        fprintf(f, "%.1f,%.1f ", x, y);
        lx = x;
        ly = y;
    }
    fputs("\"/>\n<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"", f);
    double env = 0.0, prev_r = 1.0;
    fprintf(f, "%.1f,%.1f ", sx(1.0), sy(0.0));
    for (long d = k->ndet - 1; d >= -1; d--) {
        double rr = d >= 0 ? k->rec[d] : 0.0;
        double pp = d >= 0 ? k->prec[d] : 0.0;
        if (rr != prev_r) {
            fprintf(f, "%.1f,%.1f %.1f,%.1f ", sx(prev_r), sy(env), sx(rr), sy(env));
            prev_r = rr;
        }
        if (pp > env) env = pp;
    }
    fprintf(f, "%.1f,%.1f\"/>\n", sx(0.0), sy(env));
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" fill=\"#1f77b4\">precision</text>"
            "<text x=\"%d\" y=\"%d\" fill=\"#d62728\">envelope (VOC2010+ area)</text>\n</svg>\n",
            ML + PW - 200, MT + 16, ML + PW - 200, MT + 32);
}

fr_status fr_voc_write_plots(const char *dir, const fr_voc_dataset *ds,
                             const fr_voc_eval_result *r, fr_err *err) {
    for (int c = 0; c < r->num_classes; c++) {
        char safe[128], path[4096];
        size_t j = 0;
        for (const char *p = ds->classes[c]; *p && j + 1 < sizeof safe; p++) {
            char ch = *p;
            int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
            safe[j++] = ok ? ch : '_';
        }
        safe[j] = 0;
        if (snprintf(path, sizeof path, "%s/pr_%s.svg", dir, safe) >= (int)sizeof path)
            return fr_fail(err, FR_ERR_INVALID, "plot path too long: %s", dir);
        FILE *f = fopen(path, "w");
        if (!f) return fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
        svg_plot(f, ds->classes[c], &r->cls[c]);
        if (fclose(f) != 0) return fr_fail(err, FR_ERR_IO, "%s: write error", path);
    }
    return FR_OK;
}
