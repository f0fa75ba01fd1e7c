//! Property tests of the grant-reference allocator against a trivially correct model.

use proptest::prelude::*;
use std::collections::BTreeSet;
use xen_grant::{ArrayRefAllocator, Exhausted, FreeError, GrantRef};

const FIRST: u32 = 8;
const CAP: usize = 16;

#[derive(Clone, Debug)]
enum Step {
    Alloc,
    AllocBatch(usize),
    /// Free the n-th allocated reference (if any).
    Free(usize),
    /// Free an arbitrary raw reference: out of range, already free, or in use.
    FreeRaw(u32),
    /// Free a batch of allocated references, optionally with a repeat or a stranger.
    FreeBatch(Vec<usize>, Option<u32>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Alloc),
        2 => (0..CAP + 3).prop_map(Step::AllocBatch),
        4 => any::<usize>().prop_map(Step::Free),
        2 => (0u32..40).prop_map(Step::FreeRaw),
        2 => (prop::collection::vec(any::<usize>(), 0..6), prop::option::of(0u32..40))
            .prop_map(|(v, extra)| Step::FreeBatch(v, extra)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn allocator_matches_model(steps in prop::collection::vec(step(), 1..200)) {
        let mut a = ArrayRefAllocator::<CAP>::new(GrantRef::new(FIRST), [0; CAP]).unwrap();
        let mut used: BTreeSet<u32> = BTreeSet::new();
        let nth = |used: &BTreeSet<u32>, n: usize| -> Option<u32> {
            if used.is_empty() { None } else { used.iter().nth(n % used.len()).copied() }
        };
        for s in steps {
            match s {
                Step::Alloc => match a.alloc() {
                    Ok(r) => {
                        prop_assert!((FIRST..FIRST + CAP as u32).contains(&r.raw()));
                        prop_assert!(used.insert(r.raw()), "handed out twice: {r:?}");
                    }
                    Err(e) => {
                        prop_assert_eq!(used.len(), CAP);
                        prop_assert_eq!(e, Exhausted { requested: 1, available: 0 });
                    }
                },
                Step::AllocBatch(n) => {
                    let mut out = vec![GrantRef::new(0); n];
                    match a.alloc_batch(&mut out) {
                        Ok(()) => for r in out {
                            prop_assert!(used.insert(r.raw()), "handed out twice: {r:?}");
                        },
                        Err(e) => {
                            prop_assert!(n > CAP - used.len());
                            prop_assert_eq!(e.available, CAP - used.len());
                        }
                    }
                }
                Step::Free(n) => if let Some(r) = nth(&used, n) {
                    prop_assert_eq!(a.free(GrantRef::new(r)), Ok(()));
                    used.remove(&r);
                },
                Step::FreeRaw(r) => {
                    let expect = if !(FIRST..FIRST + CAP as u32).contains(&r) {
                        Err(FreeError::NotOwned(GrantRef::new(r)))
                    } else if used.contains(&r) {
                        Ok(())
                    } else {
                        Err(FreeError::DoubleFree(GrantRef::new(r)))
                    };
                    prop_assert_eq!(a.free(GrantRef::new(r)), expect);
                    if expect.is_ok() { used.remove(&r); }
                }
                Step::FreeBatch(picks, extra) => {
                    let mut batch: Vec<u32> = picks.iter().filter_map(|&n| nth(&used, n)).collect();
                    batch.extend(extra);
                    let refs: Vec<GrantRef> = batch.iter().map(|&r| GrantRef::new(r)).collect();
                    let distinct: BTreeSet<u32> = batch.iter().copied().collect();
                    let valid = distinct.len() == batch.len() && batch.iter().all(|r| used.contains(r));
                    let result = a.free_batch(&refs);
                    prop_assert_eq!(result.is_ok(), valid, "{:?} on {:?}", result, batch);
                    if valid {
                        for r in batch { used.remove(&r); }
                    }
                }
            }
            // The allocator's view agrees with the model after every step.
            prop_assert_eq!(a.available(), CAP - used.len());
            for r in FIRST..FIRST + CAP as u32 {
                prop_assert_eq!(a.is_allocated(GrantRef::new(r)), used.contains(&r));
            }
        }
        // Whatever happened, every free reference can still be handed out exactly once.
        let mut rest = vec![GrantRef::new(0); CAP - used.len()];
        a.alloc_batch(&mut rest).unwrap();
        for r in rest {
            prop_assert!(used.insert(r.raw()));
        }
        prop_assert_eq!(used.len(), CAP);
    }
}

#[test]
fn exhaustion_then_free_makes_a_reference_available_again() {
    let mut a = ArrayRefAllocator::<2>::new(GrantRef::new(8), [0; 2]).unwrap();
    let r1 = a.alloc().unwrap();
    let _r2 = a.alloc().unwrap();
    assert!(a.alloc().is_err());
    a.free(r1).unwrap();
    assert_eq!(a.alloc(), Ok(r1));
}

#[test]
fn double_free_is_reported_not_absorbed() {
    let mut a = ArrayRefAllocator::<4>::new(GrantRef::new(8), [0; 4]).unwrap();
    let r = a.alloc().unwrap();
    a.free(r).unwrap();
    assert_eq!(a.free(r), Err(FreeError::DoubleFree(r)));
    // Had the second free been pushed, the reference would come out twice.
    let mut all = [GrantRef::new(0); 4];
    a.alloc_batch(&mut all).unwrap();
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 4);
    assert!(a.alloc().is_err());
}

#[test]
fn caller_provided_storage_works_like_inline_storage() {
    let mut storage = vec![0u32; 1000];
    let mut a = xen_grant::RefAllocator::new(GrantRef::new(100), &mut storage[..]).unwrap();
    assert_eq!(a.capacity(), 1000);
    let mut out = vec![GrantRef::new(0); 1000];
    a.alloc_batch(&mut out).unwrap();
    let distinct: BTreeSet<_> = out.iter().map(|r| r.raw()).collect();
    assert_eq!(distinct, (100..1100).collect());
}
