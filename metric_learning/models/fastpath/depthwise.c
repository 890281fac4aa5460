#include <stdlib.h>
#include <string.h>
/* Depthwise 2-D convolution, float32, NCHW, contiguous; output channel co reads
   input channel co / mult. Output pixel (oy, ox), tap (ky, kx) reads input pixel
   (oy*sh + ky*dh - pt, ox*sw + kx*dw - pl); taps outside the input read zero. */
typedef struct { int n, c, h, w, mult, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow; } geom;

/* Output columns [lo, hi) whose input column ox*sw + off lies inside [0, w). */
static void col_range(const geom *g, int off, int *lo, int *hi) {
    int a = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    int b = g->w - 1 - off < 0 ? 0 : (g->w - 1 - off) / g->sw + 1;
    *lo = a;
    *hi = b < g->ow ? b : g->ow;
}

/* out[n, co] = sum over taps of w[co, tap] * (input plane shifted by the tap). */
void dw_forward(const float *x, const float *wt, float *out, geom g) {
    long planes = (long)g.n * g.c * g.mult;
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < planes; ++p) {
        int co = p % (g.c * g.mult), n = p / (g.c * g.mult), ci = co / g.mult;
        const float *xp = x + ((long)n * g.c + ci) * g.h * g.w;
        const float *wp = wt + (long)co * g.kh * g.kw;
        float *op = out + p * g.oh * g.ow;
        memset(op, 0, sizeof(float) * g.oh * g.ow);
        for (int ky = 0; ky < g.kh; ++ky)
            for (int kx = 0; kx < g.kw; ++kx) {
                float wv = wp[ky * g.kw + kx];
                int off = kx * g.dw - g.pl, lo, hi;
                col_range(&g, off, &lo, &hi);
                for (int oy = 0; oy < g.oh; ++oy) {
                    int iy = oy * g.sh + ky * g.dh - g.pt;
                    if (iy < 0 || iy >= g.h) continue;
                    const float *xr = xp + (long)iy * g.w + off;
                    float *orow = op + (long)oy * g.ow;
                    if (g.sw == 1) for (int ox = lo; ox < hi; ++ox) orow[ox] += wv * xr[ox];
                    else for (int ox = lo; ox < hi; ++ox) orow[ox] += wv * xr[ox * g.sw];
                }
            }
    }
}

/* dx[n, ci] = the forward's scatter: each dy pixel times w[co, tap] added back
   to the input pixel that tap read (summed over the mult output channels of ci). */
void dw_backward_input(const float *dy, const float *wt, float *dx, geom g) {
    long planes = (long)g.n * g.c;
    #pragma omp parallel for schedule(static)
    for (long p = 0; p < planes; ++p) {
        int ci = p % g.c, n = p / g.c;
        float *dxp = dx + p * g.h * g.w;
        memset(dxp, 0, sizeof(float) * g.h * g.w);
        for (int j = 0; j < g.mult; ++j) {
            int co = ci * g.mult + j;
            const float *dyp = dy + ((long)n * g.c * g.mult + co) * g.oh * g.ow;
            const float *wp = wt + (long)co * g.kh * g.kw;
            for (int ky = 0; ky < g.kh; ++ky)
                for (int kx = 0; kx < g.kw; ++kx) {
                    float wv = wp[ky * g.kw + kx];
                    int off = kx * g.dw - g.pl, lo, hi;
                    col_range(&g, off, &lo, &hi);
                    for (int oy = 0; oy < g.oh; ++oy) {
                        int iy = oy * g.sh + ky * g.dh - g.pt;
                        if (iy < 0 || iy >= g.h) continue;
                        float *xr = dxp + (long)iy * g.w + off;
                        const float *drow = dyp + (long)oy * g.ow;
                        if (g.sw == 1) for (int ox = lo; ox < hi; ++ox) xr[ox] += wv * drow[ox];
                        else for (int ox = lo; ox < hi; ++ox) xr[ox * g.sw] += wv * drow[ox];
                    }
                }
        }
    }
}

/* dw[co, tap] = sum over n, oy, ox of dy * (input pixel the tap read). Each tap
   keeps a row of partial sums (plain multiply-adds, vectorisable), summed in
   double at the end. */
void dw_backward_weight(const float *x, const float *dy, float *dwt, geom g) {
    int cout = g.c * g.mult, taps = g.kh * g.kw;
    #pragma omp parallel
    {
        float *acc = malloc(sizeof(float) * taps * g.ow);
        #pragma omp for schedule(static)
        for (int co = 0; co < cout; ++co) {
            int ci = co / g.mult;
            memset(acc, 0, sizeof(float) * taps * g.ow);
            for (int n = 0; n < g.n; ++n) {
                const float *xp = x + ((long)n * g.c + ci) * g.h * g.w;
                const float *dyp = dy + ((long)n * cout + co) * g.oh * g.ow;
                for (int oy = 0; oy < g.oh; ++oy) {
                    const float *drow = dyp + (long)oy * g.ow;
                    for (int ky = 0; ky < g.kh; ++ky) {
                        int iy = oy * g.sh + ky * g.dh - g.pt;
                        if (iy < 0 || iy >= g.h) continue;
                        for (int kx = 0; kx < g.kw; ++kx) {
                            int off = kx * g.dw - g.pl, lo, hi;
                            col_range(&g, off, &lo, &hi);
                            const float *xr = xp + (long)iy * g.w + off;
                            float *a = acc + (ky * g.kw + kx) * g.ow;
                            if (g.sw == 1) for (int ox = lo; ox < hi; ++ox) a[ox] += xr[ox] * drow[ox];
                            else for (int ox = lo; ox < hi; ++ox) a[ox] += xr[ox * g.sw] * drow[ox];
                        }
                    }
                }
            }
            for (int t = 0; t < taps; ++t) {
                double s = 0.0;
                for (int ox = 0; ox < g.ow; ++ox) s += acc[t * g.ow + ox];
                dwt[(long)co * taps + t] = (float)s;
            }
        }
        free(acc);
    }
}
