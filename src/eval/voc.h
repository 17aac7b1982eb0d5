// voc.h - PASCAL VOC evaluation: dataset reading, comp4 files, AP exactly as voc_eval.py.
//
// The scoring reproduces the widely used voc_eval.py (rbgirshick/py-faster-rcnn
// lib/datasets/voc_eval.py, the same code in detectron2/evaluation/pascal_voc_evaluation.py)
// down to its floating-point details, so results equal it to 1e-9 (in practice bit for bit):
//   - float64 everywhere; IoU with +1 areas, in numpy's operation order;
//   - detections ranked by np.argsort(-confidence) with numpy's default (unstable) quicksort:
//     fr_voc_argsort is numpy's introsort for float64 (quicksort, median of 3, insertion sort
//     below 17 elements, heapsort past depth 2*floor(log2 n)). This is the order of numpy
//     <= 1.24 on every CPU, and of later numpy wherever it does not dispatch argsort to
//     x86-simd-sort (>= 1.25 with AVX-512, >= 2.0 with AVX2), where ties come out differently.
//     Consequence: among equal scores, arrays of up to 16 detections keep file order (the
//     insertion sort is stable); longer arrays follow the partitioning. opts.stable_ties
//     switches to file order everywhere (what MATLAB's sort in the VOC devkit does);
//   - tp/fp by cumulative sums; prec = tp / max(tp + fp, DBL_EPSILON) (detectron2's eps);
//     rec = tp / npos, so a class with no non-difficult object (npos = 0) gives rec = NaN:
//     AP07 = 0 and AP10 = NaN when it has detections, both 0 when it has none;
//   - VOC07: thresholds t = i * 0.1 (i = 0..10, numpy's arange(0., 1.1, 0.1), so t[3] is
//     0.30000000000000004 and a recall of exactly 3/10 does not reach it); VOC2010+: the area
//     under the precision envelope summed with numpy's pairwise summation; mAP = np.mean.
//   - a detection matches when IoU > thr (voc_eval.py), or >= thr with iou_ge (the MATLAB
//     devkit VOCevaldet.m).
// Annotations are read as voc_eval.py's parse_rec reads them (ElementTree semantics: objects
// are the root's <object> children; the first <name>, <difficult>, <bndbox> child counts;
// nested <part> and <source> elements are not objects; coordinates are parsed like Python's
// int(), so "273.5" is an error) with expat, hardened: no DTD entities (billion laughs,
// external entities), file-size, nesting and object-count caps.
//
// Ownership: every struct filled by a *_load/*_parse/*_read function owns its memory and is
// released by the matching *_free, which accepts a zeroed or already-freed struct.
// Coordinates: GT and comp4 boxes are 1-based inclusive VOC pixels (xmin, ymin, xmax, ymax).
#ifndef FR_VOC_H
#define FR_VOC_H

#include "core/status.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

// The 20 PASCAL VOC classes in the devkit's order.
#define FR_VOC_NUM_CLASSES 20
extern const char *const fr_voc_classes[FR_VOC_NUM_CLASSES];

// The VOC name for a class name of a COCO-trained model (airplane -> aeroplane, motorcycle ->
// motorbike, dining table -> diningtable, couch -> sofa, potted plant -> pottedplant,
// tv -> tvmonitor); any other name is returned unchanged.
const char *fr_voc_class_alias(const char *name);

typedef struct {
    size_t max_xml_bytes;  // annotation file size cap (default 4 MiB)
    int max_objects;       // <object>s per annotation (default 10000)
    int max_depth;         // XML element nesting (default 256)
    int max_name;          // bytes of a <name> (default 256)
    size_t max_list_bytes; // image list file size cap (default 256 MiB)
    long max_images;       // ids in an image list (default 10,000,000)
    size_t max_line;       // bytes in one comp4 or list line (default 4096)
    long max_dets;         // lines in one comp4 file (default 20,000,000)
} fr_voc_limits;

void fr_voc_limits_default(fr_voc_limits *lim);

// ---------------------------------------------------------------- annotations

typedef struct {
    char *name;    // <name> text exactly as ElementTree's .text ("" when empty); owned
    int difficult; // int(<difficult>), nonzero = difficult; 0 when the element is missing
    int truncated; // int(<truncated>); 0 when missing
    int box[4];    // <bndbox> xmin, ymin, xmax, ymax (1-based inclusive pixels)
} fr_voc_object;

typedef struct {
    int has_size;             // a <size> with <width> and <height> was present
    int width, height, depth; // <size> values (0 when missing)
    int missing_difficult;    // objects without <difficult> (taken as 0) (defaulted to 0)
    int num_objects;
    fr_voc_object *objects;   // owned
} fr_voc_annotation;

// Parses annotation XML (len bytes, need not be NUL-terminated) into a (zeroed first).
// FR_ERR_FORMAT: malformed XML (unclosed tag, invalid UTF-8...), a DOCTYPE declaring
// entities, an <object> without <name> or <bndbox>, a coordinate missing or not an integer
// as Python's int() reads it (ASCII digits, optional sign, surrounding whitespace, '_'
// between digits), |value| > 1e9, a non-integer <difficult>/<truncated>/<size>.
// FR_ERR_TOO_LARGE: over lim's caps. FR_ERR_NOMEM. Messages give the XML line number.
fr_status fr_voc_annotation_parse(fr_voc_annotation *a, const char *xml, size_t len,
                                  const fr_voc_limits *lim, fr_err *err);
// Reads and parses a file; the message starts with the path. FR_ERR_IO when unreadable.
fr_status fr_voc_annotation_load(fr_voc_annotation *a, const char *path,
                                 const fr_voc_limits *lim, fr_err *err);
void fr_voc_annotation_free(fr_voc_annotation *a);

// Parses s like Python's int(s) restricted to ASCII, with |value| <= 1e9. 0 on success.
int fr_voc_parse_int(const char *s, size_t len, long *out);

// ---------------------------------------------------------------- id map

// A hash map from image id strings to indices 0..n-1 (ids are copied).
typedef struct fr_voc_idmap fr_voc_idmap;
fr_status fr_voc_idmap_new(fr_voc_idmap **out, size_t expected, fr_err *err);
// Adds id -> value; *existing gets the previous value (and nothing is added) when present,
// else -1. FR_ERR_NOMEM.
fr_status fr_voc_idmap_put(fr_voc_idmap *m, const char *id, size_t len, int value, int *existing,
                           fr_err *err);
int fr_voc_idmap_get(const fr_voc_idmap *m, const char *id, size_t len); // -1 when absent
void fr_voc_idmap_free(fr_voc_idmap *m);

// ---------------------------------------------------------------- image lists

typedef struct {
    int num_ids;
    char **ids;        // unique ids in first-seen order; owned
    char **bad;        // per id: NULL, or why the id is unusable (owned); such ids are listed
                       // as failed (a '/', '\\', whitespace or control byte, ".", "..")
    long empty_lines;  // blank lines skipped
    long duplicates;   // repeated ids dropped (voc_eval.py would count their objects again)
    fr_voc_idmap *map; // id -> index
} fr_voc_imageset;

// Reads ImageSets/Main/<set>.txt style text: one id per line, surrounding whitespace and CR
// stripped (LF, CRLF and CR line ends), blank lines skipped, duplicates dropped (first kept).
// Errors: FR_ERR_IO, FR_ERR_TOO_LARGE (file, line or id count caps), FR_ERR_FORMAT (a NUL
// byte), FR_ERR_NOMEM.
fr_status fr_voc_imageset_parse(fr_voc_imageset *s, const char *text, size_t len,
                                const fr_voc_limits *lim, fr_err *err);
fr_status fr_voc_imageset_load(fr_voc_imageset *s, const char *path, const fr_voc_limits *lim,
                               fr_err *err);
void fr_voc_imageset_free(fr_voc_imageset *s);

// ---------------------------------------------------------------- dataset

typedef enum {
    FR_VOC_BOX_KEEP, // keep inverted/outside GT boxes as written (voc_eval.py), count them
    FR_VOC_BOX_SKIP, // drop such objects
    FR_VOC_BOX_CLIP, // clip to [1, width] x [1, height] (when <size> is known), drop if empty
} fr_voc_box_policy;

typedef struct {
    double box[4]; // xmin, ymin, xmax, ymax as float64 (voc_eval.py's astype(float))
    int difficult; // nonzero = difficult
} fr_voc_gt;

typedef struct {
    int cls;      // index into the dataset's classes
    fr_voc_gt gt;
} fr_voc_gtobj;

typedef struct {
    char *root;               // the VOC year directory (…/VOCdevkit/VOC2007); owned
    char *set;                // image set name ("test"); owned
    int num_classes;
    char **classes;           // owned copies, in evaluation order
    fr_voc_imageset list;     // the ids
    char **fail;              // per image: NULL, or "<path>: why" (owned); failed images are
                              // not scored (their objects and detections are left out)
    int *width, *height;      // per image from <size> (0 when missing)
    int *obj_start;           // num_ids + 1 offsets into objs
    fr_voc_gtobj *objs;       // known-class objects of every usable image
    // warning counters
    long unknown_objects;     // objects whose <name> is not one of classes (ignored)
    long missing_difficult;   // objects without <difficult> (taken as 0)
    long bad_boxes;           // objects with xmin > xmax, ymin > ymax, or outside the image
    long bad_boxes_dropped;   // of those, dropped by the policy
    long no_size;             // annotations without <size>
} fr_voc_dataset;

typedef struct {
    fr_voc_limits lim;
    fr_voc_box_policy boxes;
} fr_voc_dataset_opts;

void fr_voc_dataset_opts_default(fr_voc_dataset_opts *o);

// Loads root/ImageSets/Main/<set>.txt and root/Annotations/<id>.xml for every id. A broken
// annotation marks that image failed (ds->fail) and loading goes on; the function itself
// fails only when the list is unusable (FR_ERR_IO, FR_ERR_TOO_LARGE...) or on FR_ERR_NOMEM.
// classes: num_classes names (NULL: the 20 VOC classes).
fr_status fr_voc_dataset_load(fr_voc_dataset *ds, const char *root, const char *set,
                              const char *const *classes, int num_classes,
                              const fr_voc_dataset_opts *o, fr_err *err);
// Marks image i failed with a copy of msg (keeps the first message). FR_ERR_NOMEM.
fr_status fr_voc_dataset_fail(fr_voc_dataset *ds, int i, const char *msg, fr_err *err);
int fr_voc_dataset_failed_count(const fr_voc_dataset *ds);
void fr_voc_dataset_free(fr_voc_dataset *ds);
// The path of image i's JPEG into buf (root/JPEGImages/<id>.jpg). 0 on success, -1 if too long.
int fr_voc_image_path(const fr_voc_dataset *ds, int i, char *buf, size_t cap);

// ---------------------------------------------------------------- scoring (arrays)

typedef struct {
    int image;     // index of the image
    double score;  // confidence
    double box[4]; // xmin, ymin, xmax, ymax (1-based VOC pixels)
} fr_voc_det;

typedef struct {
    double iou;      // overlap threshold (default 0.5)
    int iou_ge;      // 0: match when IoU > iou (voc_eval.py); 1: IoU >= iou (MATLAB devkit)
    int stable_ties; // 0: numpy's argsort order (default); 1: equal scores keep file order
} fr_voc_score_opts;

void fr_voc_score_opts_default(fr_voc_score_opts *o);

typedef struct {
    double ap07, ap10; // may be NaN (see the top of this file)
    long npos;         // non-difficult objects
    long ndet;         // detections scored
    long tp, fp;       // true / false positives (matches of difficult objects are neither)
    double *rec;       // ndet recalls in ranked order (NaN when npos = 0); owned
    double *prec;      // ndet precisions in ranked order; owned
} fr_voc_class_result;

// Scores one class. gt_start[num_images + 1] are offsets into gt (the class's objects of
// image i are gt[gt_start[i] .. gt_start[i+1]-1], in annotation order). dets in file order;
// a det.image outside [0, num_images) is FR_ERR_INVALID. FR_ERR_NOMEM.
fr_status fr_voc_score_class(int num_images, const int *gt_start, const fr_voc_gt *gt,
                             const fr_voc_det *dets, size_t ndet, const fr_voc_score_opts *o,
                             fr_voc_class_result *r, fr_err *err);
void fr_voc_class_result_free(fr_voc_class_result *r);

// voc_ap(rec, prec, use_07_metric=True) and (False), for n points. AP10 allocates 3(n + 2)
// doubles of scratch: FR_ERR_NOMEM, FR_ERR_TOO_LARGE when that size overflows.
double fr_voc_ap07(const double *rec, const double *prec, size_t n);
fr_status fr_voc_ap10(const double *rec, const double *prec, size_t n, double *ap, fr_err *err);
// np.argsort(v) with numpy's default kind (see the top of this file): idx gets n indices.
void fr_voc_argsort(const double *v, size_t n, size_t *idx);
// np.sum(a) for a float64 vector (identity 0.0 plus numpy's pairwise summation).
double fr_voc_sum(const double *a, size_t n);
// np.mean(a): fr_voc_sum(a, n) / n (NaN for n = 0).
double fr_voc_mean(const double *a, size_t n);
// The 11 VOC07 thresholds exactly as np.arange(0., 1.1, 0.1) produces them.
double fr_voc_threshold07(int i);

// ---------------------------------------------------------------- comp4 files

// comp4 line text for one detection as detectron2's PascalVOCDetectionEvaluator writes it:
// "<id> <score %.3f> <xmin+1 %.1f> <ymin+1 %.1f> <xmax %.1f> <ymax %.1f>\n" where the +1 is
// float32 arithmetic on the model's 0-based box (x1, y1, x2, y2). Returns the length
// (snprintf semantics).
int fr_voc_comp4_format(char *buf, size_t cap, const char *id, float score, const float box[4]);

// "comp4_det_<set>_<class>.txt" under dir into buf. 0 on success, -1 if too long.
int fr_voc_comp4_path(char *buf, size_t cap, const char *dir, const char *set, const char *cls);

typedef struct {
    long lines;        // non-blank lines read
    long bad_lines;    // malformed lines (skipped): not 6 fields, a non-number, a non-finite
                       // value
    long unknown_ids;  // lines whose id is not in the image list (skipped)
    long failed_ids;   // lines of images marked failed (skipped, not an error)
    long blank_lines;  // skipped
    char first_error[512]; // "<path>:<line>: why" of the first bad or unknown line
} fr_voc_comp4_report;

// Reads a comp4 file. Ids are looked up in ds's list; lines of failed images are skipped.
// Fields are separated by spaces or tabs; CRLF accepted; numbers as Python's float() reads
// decimal text (no "inf"/"nan", no '_', no hex). *dets (owned, fr_free) keeps file order.
// Errors: FR_ERR_IO (unreadable), FR_ERR_TOO_LARGE (a line over lim.max_line, more than
// lim.max_dets lines), FR_ERR_NOMEM. Malformed lines are counted in rep, not errors.
fr_status fr_voc_comp4_read(const char *path, const fr_voc_dataset *ds, const fr_voc_limits *lim,
                            fr_voc_det **dets, size_t *ndet, fr_voc_comp4_report *rep,
                            fr_err *err);

// ---------------------------------------------------------------- whole evaluation

typedef struct {
    int num_classes;
    fr_voc_class_result *cls; // per class; owned
    int *has_file;            // per class: 1 if its comp4 file existed
    fr_voc_comp4_report *rep; // per class reading reports
    double map07, map10;      // np.mean over the classes (NaN if one AP is NaN)
    int images_listed, images_scored, images_failed; // scored + failed == listed
    long problems;            // missing comp4 files + bad lines + unknown ids
} fr_voc_eval_result;

// Scores the comp4 files in dir (comp4_det_<set>_<class>.txt) against ds. A missing file is
// scored as no detections and counted in r->problems, as are bad lines. Fails only on
// FR_ERR_IO other than a missing file, limits, or FR_ERR_NOMEM.
fr_status fr_voc_evaluate(const fr_voc_dataset *ds, const char *dir, const fr_voc_score_opts *o,
                          const fr_voc_limits *lim, fr_voc_eval_result *r, fr_err *err);
void fr_voc_eval_result_free(fr_voc_eval_result *r);

// Writes {"07": {"<class>": ap, ..., "mAP": m}, "10": {...}} (NaN as null, %.17g) to f.
void fr_voc_write_json(FILE *f, const fr_voc_dataset *ds, const fr_voc_eval_result *r);
// Prints the per-class table (AP07, AP10 in percent, npos, dets, TP, FP) and the mAP lines.
void fr_voc_print_table(FILE *f, const fr_voc_dataset *ds, const fr_voc_eval_result *r);
// Writes dir/pr_<class>.svg per class: the precision-recall curve and its envelope, with
// both APs in the title. FR_ERR_IO naming the file.
fr_status fr_voc_write_plots(const char *dir, const fr_voc_dataset *ds,
                             const fr_voc_eval_result *r, fr_err *err);

// ---------------------------------------------------------------- running a detector

// One detection from a detector, in the model's 0-based pixel space.
typedef struct {
    int cls;       // index into the dataset's classes
    float score;
    float box[4];  // x1, y1, x2, y2
} fr_voc_run_det;

typedef struct {
    int width, height; // decoded image size (compared with <size>, warning on mismatch)
    int n;
    fr_voc_run_det *dets; // owned by the callback's user until the next call
} fr_voc_run_out;

// Runs detection on one image; fills out. A failure (missing/undecodable image...) fails
// that image only: the message (prefixed with the path) is recorded and the run goes on.
typedef fr_status (*fr_voc_detect_fn)(void *user, const char *image_path, fr_voc_run_out *out,
                                      fr_err *err);

// Progress: called after each image with images done (this run and before), the number to
// do, and the number done in this process (for a rate).
typedef void (*fr_voc_progress_fn)(void *user, int done, int total, int done_here);

typedef struct {
    const char *out_dir;     // where comp4 files and progress.txt go (created if missing)
    int resume;              // continue a run found in out_dir (else out_dir must hold none)
    int shard_k, shard_n;    // this process does ids at list positions p with p % n == k - 1
    const char *model_id;    // recorded; resume and merge refuse a different one
    const char *options_id;  // thresholds etc., recorded likewise
    const volatile sig_atomic_t *stop; // NULL, or nonzero stops the run after the current image
    fr_voc_progress_fn progress;
    void *progress_user;
} fr_voc_run_opts;

typedef struct {
    int total;         // ids of this shard with a usable annotation
    int done;          // of those, processed (ok or failed), this run and before
    int ok, failed;    // detector successes / failures among done
    int skipped;       // done before this process started (resume)
    int interrupted;   // stopped by *stop before the end
    int complete;      // every id of the shard is done
    long bad_dets;     // detections dropped: class out of range, non-finite score or box
    long size_mismatch; // images whose decoded size differs from <size> (the image wins)
} fr_voc_run_report;

// Runs det over the shard's ids of ds (ids whose annotation failed are not run), appending
// comp4 lines per image and recording each image in out_dir/progress.txt after its lines are
// flushed, so a killed run resumes without losing or repeating an image (lines of images not
// recorded are dropped on resume). Images that failed before are retried on resume. When the
// shard completes, the comp4 files are rewritten in list order (identical to an
// uninterrupted run) and the progress file marked complete. Detector failures mark the image
// failed in ds. One process writes a directory at a time (flock on out_dir/.frcnn-eval.lock).
// Errors: FR_ERR_IO (out_dir), FR_ERR_INVALID (out_dir holds a different run, a run without
// resume, comp4 files without a progress file, or another process holds its lock),
// FR_ERR_NOMEM.
fr_status fr_voc_run(fr_voc_dataset *ds, const fr_voc_run_opts *o, fr_voc_detect_fn det,
                     void *det_user, fr_voc_run_report *rep, fr_err *err);

// Reads out_dir/progress.txt of a finished run (or merged dir) and marks the images it lists
// as failed in ds. *found = 0 when there is no progress file (plain comp4 files).
// FR_ERR_INVALID when the run is not complete, or was made for another list/shard layout.
fr_status fr_voc_run_apply(fr_voc_dataset *ds, const char *dir, int *found, fr_err *err);

// Merges the complete shard directories dirs[0..n-1] (one per shard 1..N of the same run)
// into out_dir: comp4 files in list order, byte-identical to an unsharded run, and a progress
// file. FR_ERR_INVALID when shards are missing, repeated, incomplete or from another run.
fr_status fr_voc_merge(fr_voc_dataset *ds, const char *const *dirs, int n, const char *out_dir,
                       fr_err *err);

#endif
