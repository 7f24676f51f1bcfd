/*
 * adamw.cu: the AdamW update of one rank's ZeRO-1 slice on the GPU, fused with writing the bf16
 * compute copy of the updated weights, and the deterministic sum of squares for the global norm.
 *
 * Dimensions: n elements of the slice.
 */
#include "adamw_update.h"
#include "common.cuh"

static __global__ void adamw_kernel(float *master, float *m, float *v, const float *grad,
                                    bf16 *param, int64_t n, float lr, float beta1, float beta2,
                                    float eps, float wd, float grad_scale, float bc1, float bc2) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float w = master[i];
    w -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * w);
    master[i] = w;
    param[i] = to_bf(w);
}

extern "C" void adamw_update_cuda(float *master, float *m, float *v, const float *grad,
                                  void *param_bf16, int64_t n, float lr, float beta1, float beta2,
                                  float eps, float weight_decay, float grad_scale, int64_t t,
                                  const struct gpu_ctx *g) {
    if (n == 0) return;
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    adamw_kernel<<<(unsigned)ceil_div(n, 256), 256, 0, stream_of(g)>>>(
        master, m, v, grad, (bf16 *)param_bf16, n, lr, beta1, beta2, eps, weight_decay,
        grad_scale, bc1, bc2);
    CUDA_CHECK_LAST();
}

#define SUMSQ_BLOCKS 1024
#define SUMSQ_THREADS 256

/* Fixed grid, fixed per-thread stride, fixed tree: the same bits for the same input. */
static __global__ void sumsq_partial(double *part, const float *x, int64_t n) {
    __shared__ double sh[SUMSQ_THREADS];
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * SUMSQ_THREADS + threadIdx.x; i < n;
         i += (int64_t)SUMSQ_BLOCKS * SUMSQ_THREADS)
        acc += (double)x[i] * (double)x[i];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = SUMSQ_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

static __global__ void sumsq_final(double *out, const double *part) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++) s += part[b];
    *out = s;
}

extern "C" size_t sumsq_workspace_bytes(void) { return (SUMSQ_BLOCKS + 1) * sizeof(double); }

extern "C" double sumsq_cuda(const float *x, int64_t n, void *workspace, const struct gpu_ctx *g) {
    double *part = (double *)workspace, result = 0.0;
    sumsq_partial<<<SUMSQ_BLOCKS, SUMSQ_THREADS, 0, stream_of(g)>>>(part, x, n);
    CUDA_CHECK_LAST();
    sumsq_final<<<1, 32, 0, stream_of(g)>>>(part + SUMSQ_BLOCKS, part);
    CUDA_CHECK_LAST();
    CUDA_CHECK(cudaMemcpyAsync(&result, part + SUMSQ_BLOCKS, sizeof result, cudaMemcpyDeviceToHost,
                               stream_of(g)));
    CUDA_CHECK(cudaStreamSynchronize(stream_of(g)));
    return result;
}
