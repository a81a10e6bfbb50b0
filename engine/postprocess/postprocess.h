/*
 * postprocess.h — the TFLite_Detection_PostProcess kernel (internal to engine/).
 *
 * Box decoding with anchors (TF Object Detection API center-size coder) and
 * non-maximum suppression, fast (one class per anchor) or regular
 * (per-class), reproducing TFLite's kernel: decoding in double, IoU in float,
 * stable descending sort so equal scores keep anchor order.
 * Two kernel entries (ops/kernels.h): `eng_k_postprocess`, the reference
 * (eng_kernel_get_ref), and `eng_k_postprocess_fast`, selected by
 * eng_kernel_get: byte-identical output, fast NMS without decoding, sorting or
 * comparing the candidates it never reaches (regular NMS shares the reference
 * code).  The sorts are exposed for unit tests.  Inference worker thread.
 */
#ifndef DETD_ENGINE_POSTPROCESS_H
#define DETD_ENGINE_POSTPROCESS_H

#include "ops/ops.h"

/* Stable sort of idx[0..n) by values[idx] descending; tmp holds n ints. */
void pp_argsort_desc(const float *values, int *idx, int n, int *tmp);

/*
 * Same order as pp_argsort_desc() (descending, ties by position, -0.0 == +0.0)
 * for NaN-free values, by a stable LSD radix sort: idx[0..n) receives the
 * positions; work holds 3n 32-bit slots.
 */
void pp_radix_argsort_desc(const float *values, int n, int *idx, uint32_t *work);

/*
 * The first k of idx[0..n) = 0..n-1 ordered by values descending, the way the
 * reference gets them (std::partial_sort of libstdc++: heap select, then heap
 * sort, so equal values come out in heap order, not index order); k == 1 is
 * the first maximum.  idx holds n ints.
 */
void pp_partial_argsort_desc(const float *values, int n, int k, int *idx);

#endif
