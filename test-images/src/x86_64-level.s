/* archctl x86-64 level probe: which x86-64 micro-architecture level (1..4) the CPU
 * running it provides -- the real one, or the one an emulator (qemu-x86_64) presents.
 * Writes "x86-64-vN\n" and exits with status N.
 *
 * The rules are tonistiigi/go-archvariant's detectVersion() (what buildkit uses), step
 * by step, and the same as archctl's src/cpu.rs:
 *   v1 unless CPUID's highest basic leaf is >= 7 and its highest extended one >= 0x80000001;
 *   v2: leaf 1 ECX SSE3 SSSE3 CX16 SSE4.1 SSE4.2 POPCNT, leaf 0x80000001 ECX LAHF-SAHF;
 *   v3: v2 + leaf 1 ECX FMA MOVBE XSAVE OSXSAVE AVX F16C, leaf 7 EBX BMI1 AVX2 BMI2,
 *       leaf 0x80000001 ECX ABM (LZCNT), and XCR0 (XGETBV) SSE+AVX state enabled by the OS;
 *   v4: v3 + leaf 7 EBX AVX512F DQ CD BW VL, and XCR0 opmask+ZMM_Hi256+Hi16_ZMM state.
 * XGETBV is executed only when OSXSAVE is set (v3 requires it), so it cannot fault.
 * Linux x86-64 syscall ABI: write=1, exit=60. */
	.section .note.GNU-stack,"",%progbits

	.set	V2_CX,    (1<<0)|(1<<9)|(1<<13)|(1<<19)|(1<<20)|(1<<23)
	.set	V3_CX,    V2_CX|(1<<12)|(1<<22)|(1<<26)|(1<<27)|(1<<28)|(1<<29)
	.set	V3_BX,    (1<<3)|(1<<5)|(1<<8)
	.set	V4_BX,    V3_BX|(1<<16)|(1<<17)|(1<<28)|(1<<30)|(1<<31)
	.set	V2_EXTCX, (1<<0)
	.set	V3_EXTCX, V2_EXTCX|(1<<5)
	.set	V3_OS,    (1<<1)|(1<<2)
	.set	V4_OS,    V3_OS|(1<<5)|(1<<6)|(1<<7)

	.text
	.globl _start
_start:
	movl	$1, %r12d		/* level */
	xorl	%eax, %eax		/* highest basic leaf */
	xorl	%ecx, %ecx
	cpuid
	cmpl	$7, %eax
	jb	done
	movl	$0x80000000, %eax	/* highest extended leaf */
	xorl	%ecx, %ecx
	cpuid
	cmpl	$0x80000001, %eax
	jb	done
	movl	$4, %r12d		/* start from the highest */

	movl	$1, %eax		/* leaf 1: feature bits */
	xorl	%ecx, %ecx
	cpuid
	movl	%ecx, %eax
	andl	$V3_CX, %eax
	cmpl	$V3_CX, %eax
	je	1f
	movl	$2, %r12d
	andl	$V2_CX, %ecx
	cmpl	$V2_CX, %ecx
	je	1f
	movl	$1, %r12d
	jmp	done
1:
	movl	$7, %eax		/* leaf 7, subleaf 0: extended features */
	xorl	%ecx, %ecx
	cpuid
	cmpl	$4, %r12d
	jne	2f
	movl	%ebx, %eax
	andl	$V4_BX, %eax
	cmpl	$V4_BX, %eax
	je	2f
	movl	$3, %r12d
2:
	cmpl	$3, %r12d
	jne	3f
	andl	$V3_BX, %ebx
	cmpl	$V3_BX, %ebx
	je	3f
	movl	$2, %r12d
3:
	movl	$0x80000001, %eax	/* extended processor info */
	xorl	%ecx, %ecx
	cpuid
	cmpl	$3, %r12d
	jb	4f
	movl	%ecx, %eax
	andl	$V3_EXTCX, %eax
	cmpl	$V3_EXTCX, %eax
	je	4f
	movl	$2, %r12d
4:
	cmpl	$2, %r12d
	jne	5f
	testl	$V2_EXTCX, %ecx
	jnz	5f
	movl	$1, %r12d
	jmp	done
5:
	cmpl	$3, %r12d
	jb	done
	xorl	%ecx, %ecx		/* XCR0: state the OS saves */
	xgetbv
	cmpl	$4, %r12d
	jne	6f
	movl	%eax, %ebx
	andl	$V4_OS, %ebx
	cmpl	$V4_OS, %ebx
	je	6f
	movl	$3, %r12d
6:
	andl	$V3_OS, %eax
	cmpl	$V3_OS, %eax
	je	done
	movl	$2, %r12d
done:
	subq	$16, %rsp		/* "x86-64-vN\n" on the stack */
	movabsq	$0x762d34362d363878, %rax	/* "x86-64-v", little-endian */
	movq	%rax, (%rsp)
	leal	48(%r12), %eax		/* '0' + level */
	movb	%al, 8(%rsp)
	movb	$10, 9(%rsp)
	movl	$1, %eax		/* __NR_write */
	movl	$1, %edi		/* fd = stdout */
	movq	%rsp, %rsi		/* buf */
	movl	$10, %edx		/* count */
	syscall
	movl	$60, %eax		/* __NR_exit */
	movl	%r12d, %edi		/* status = level */
	syscall
