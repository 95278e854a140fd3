/* bench/scale_slices.c (make bench-scale): the CPU time (thread clock, so
 * that preemption does not count) of each hash pick while the Maglev table
 * is rebuilt after one of n backends goes down: mean, 99.9th percentile,
 * worst, and the picks until the build ends. The core alone, no Lua.
 *   build/scale_slices N [slice]   (slice: build units per pick) */
#include "core/core.h"
#include "core/block.h"
#include "core/pick.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int cmp(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  uint32_t n=atoi(argv[1]), i; ul_opts o; ul_opts_default(&o); o.strategy=UL_HASH;
  ul_list*l=malloc(ul_size(n,UL_HASH)); ul_init(l,n,&o,1);
  for(i=0;i<n;i++) ul_append(l,0,-1,0,1,ul_hash(&i,4),0);
  double t0=now(); ul_pick(l,1,0); double first=now()-t0;
  if(argc>2) l->maglev_slice=atoi(argv[2]);
  ul_down(l,5,0);ul_down(l,5,0);
  size_t cap=1<<22, k=0; double *d=malloc(cap*sizeof *d), sum=0;
  while(l->maglev_busy && k<cap){ t0=now(); ul_pick(l,(uint64_t)k*0x9E3779B97F4A7C15ULL,0); d[k]=now()-t0; sum+=d[k++]; }
  qsort(d,k,sizeof *d,cmp);
  printf("n=%u M=%u slice=%u first %.3f s; rebuild: %zu picks, %.2f s, mean %.1f us, p99.9 %.1f us, worst %.1f us\n",
    n,l->maglev_m,l->maglev_slice,first,k,sum,sum/k*1e6,d[(size_t)(k*0.999)]*1e6,d[k-1]*1e6);
  return 0;}
