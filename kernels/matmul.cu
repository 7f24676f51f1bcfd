/*
 * matmul.cu: the linear layer on the GPU through cuBLASLt: bf16 operands, fp32 accumulation,
 * bf16 or fp32 results.
 *
 * Dimensions: N rows, IC input channels, OC output channels; W is (OC, IC) row-major.
 * Row-major X (r x c) is column-major X^T, so with W' = W^T (IC x OC, ld IC), I' = inp^T
 * (IC x N, ld IC) and D' = dout^T (OC x N, ld OC), in column-major terms:
 *   out^T  (OC x N)  = op_T(W') I'          m = OC, n = N,  k = IC
 *   dinp^T (IC x N) += W' D'                m = IC, n = N,  k = OC
 *   dw^T   (IC x OC) += I' op_T(D')         m = IC, n = OC, k = N   (fp32 result)
 */
#include <cublasLt.h>

#include "common.cuh"
#include "matmul.h"

static void lt_matmul(const struct gpu_ctx *g, cublasOperation_t ta, cublasOperation_t tb,
                      int64_t m, int64_t n, int64_t k, float alpha, const void *A, int64_t lda,
                      const void *B, int64_t ldb, float beta, void *C, cudaDataType_t ctype,
                      int64_t ldc) {
    cublasLtHandle_t lt = (cublasLtHandle_t)g->blas;
    cublasLtMatmulDesc_t op;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k,
                                            ta == CUBLAS_OP_N ? k : m, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n,
                                            tb == CUBLAS_OP_N ? n : k, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, ctype, m, n, ldc));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = g->blas_workspace_bytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found));
    CHECKF(found > 0, "cuBLASLt has no algorithm for m=%lld n=%lld k=%lld", (long long)m,
           (long long)n, (long long)k);
    CUBLAS_CHECK(cublasLtMatmul(lt, op, &alpha, A, la, B, lb, &beta, C, lc, C, lc, &heur.algo,
                                g->blas_workspace, g->blas_workspace_bytes, stream_of(g)));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
}

extern "C" void matmul_forward_cuda(void *out, const void *inp, const void *w, int64_t N, int IC,
                                    int OC, float alpha, bool accumulate, const struct gpu_ctx *g) {
    if (N == 0) return;
    lt_matmul(g, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, alpha, w, IC, inp, IC,
              accumulate ? 1.0f : 0.0f, out, CUDA_R_16BF, OC);
}

extern "C" void matmul_forward_f32_cuda(float *out, const void *inp, const void *w, int64_t N,
                                        int IC, int OC, float alpha, const struct gpu_ctx *g) {
    if (N == 0) return;
    lt_matmul(g, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, alpha, w, IC, inp, IC, 0.0f, out,
              CUDA_R_32F, OC);
}

extern "C" void matmul_backward_cuda(void *dinp, float *dw, const void *dout, const void *inp,
                                     const void *w, int64_t N, int IC, int OC, float alpha,
                                     const struct gpu_ctx *g) {
    if (N == 0) return;
    if (dinp) lt_matmul(g, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, alpha, w, IC, dout, OC, 1.0f, dinp,
                        CUDA_R_16BF, IC);
    if (dw) lt_matmul(g, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, alpha, inp, IC, dout, OC, 1.0f, dw,
                      CUDA_R_32F, IC);
}
