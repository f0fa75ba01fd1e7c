//! Hand-written `#[repr(C)]` images of the structs that cross a shared ring or page.
//!
//! Each struct here has the exact size, alignment and field offsets of its C counterpart in
//! the Xen public headers, with every byte the C compiler would leave as padding spelled out
//! as a private `_pad*` field. Two consequences:
//!
//! - No uninitialised byte can reach a peer (XSA-216, XSA-403): a value is either built from
//!   `ZERO` (all padding zero) or decoded from bytes. Padding is private, so code outside this
//!   crate cannot put anything in it.
//! - Every bit pattern is a valid value and there is no implicit padding, so a ring can copy a
//!   slot into one of these structs and back without reading uninitialised memory.
//!
//! Layout is checked three times: at compile time against the bindgen types (`assert!` on
//! `size_of`, `align_of` and `offset_of!` of every field with a C counterpart), at compile
//! time for the absence of implicit padding (the field sizes add up to the struct size), and
//! by `tests/layout.rs` against the C compiler.
//!
//! Each struct also has a safe byte codec, `to_bytes`/`from_bytes`, giving its memory image in
//! native byte order (Xen's ABI is native-endian; all its architectures are little-endian).
//! It lets one ring slot be read as another request variant of the same protocol (see
//! [`blkif::Request::to_discard`]) and lets tests and fuzzers work on plain bytes.

pub mod blkif;
pub mod grant;
pub mod netif;
pub mod ring;
pub mod vscsiif;
pub mod xenstore;

/// A field type of a wire struct: a fixed-size value with a native-endian byte image.
///
/// Implemented for the integer types, arrays of fields and the wire structs themselves, so
/// the codec of a struct is the codec of its fields at their offsets.
pub(crate) trait Field: Sized + Copy {
    /// The all-zero value.
    const ZERO: Self;
    /// Bytes in the image.
    const SIZE: usize;
    /// Writes the image to `out[..SIZE]`.
    ///
    /// The callers are the generated codecs, which pass a slice starting at the field's
    /// offset inside an array of the struct's size; compile-time assertions guarantee that
    /// offset + `SIZE` <= size, so the slicing below cannot fail.
    fn put(&self, out: &mut [u8]);
    /// Reads the image from `inp[..SIZE]` (same guarantee as [`Field::put`]).
    fn get(inp: &[u8]) -> Self;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const ZERO: Self = 0;
            const SIZE: usize = core::mem::size_of::<$t>();
            fn put(&self, out: &mut [u8]) {
                out[..Self::SIZE].copy_from_slice(&self.to_ne_bytes());
            }
            fn get(inp: &[u8]) -> Self {
                let mut b = [0u8; core::mem::size_of::<$t>()];
                b.copy_from_slice(&inp[..Self::SIZE]);
                <$t>::from_ne_bytes(b)
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64, i16, i32);

impl<T: Field, const N: usize> Field for [T; N] {
    const ZERO: Self = [T::ZERO; N];
    const SIZE: usize = T::SIZE * N;
    fn put(&self, out: &mut [u8]) {
        for (item, chunk) in self.iter().zip(out.chunks_exact_mut(T::SIZE)) {
            item.put(chunk);
        }
    }
    fn get(inp: &[u8]) -> Self {
        core::array::from_fn(|i| T::get(&inp[i * T::SIZE..]))
    }
}

/// Defines a wire struct: `#[repr(C)]`, `Copy`, with `ZERO`, `SIZE`, a byte codec and
/// compile-time layout assertions.
///
/// `(N bytes, like C)` asserts the size and alignment of the C type `C`; `(N bytes, prefix of
/// C)` asserts that the struct describes the first `N` bytes of the larger C type.
/// Fields written `name: type => c_name` must match the field `c_name` of the bindgen type
/// (offset and size); fields written `_pad: type` are explicit padding, private and zero
/// unless decoded from a peer's bytes.
macro_rules! wire_struct {
    // `like C`: the same size and alignment as the C struct.
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($size:literal bytes, like $cty:path) { $($body:tt)* }
    ) => {
        $crate::wire::wire_struct! { @define $(#[$meta])* pub struct $name ($size, $cty) { $($body)* } }
        const _: () = {
            assert!(core::mem::size_of::<$cty>() == $size);
            assert!(core::mem::align_of::<$name>() == core::mem::align_of::<$cty>());
        };
    };
    // `prefix of C`: the first bytes of a larger C struct (alignment may be smaller).
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($size:literal bytes, prefix of $cty:path) { $($body:tt)* }
    ) => {
        $crate::wire::wire_struct! { @define $(#[$meta])* pub struct $name ($size, $cty) { $($body)* } }
        const _: () = assert!(core::mem::size_of::<$cty>() >= $size);
    };
    (
        @define
        $(#[$meta:meta])*
        pub struct $name:ident ($size:literal, $cty:path) {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $fty:ty $(=> $cfield:ident)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* $fvis $field: $fty, )*
        }

        impl $name {
            /// Size of the C struct in bytes.
            pub const SIZE: usize = $size;

            /// The all-zero value, padding included: the start of every value we send.
            pub const ZERO: Self = Self { $( $field: <$fty as $crate::wire::Field>::ZERO, )* };

            /// The struct's memory image (native byte order, padding included).
            pub fn to_bytes(&self) -> [u8; $size] {
                let mut out = [0u8; $size];
                $( $crate::wire::Field::put(
                    &self.$field,
                    &mut out[core::mem::offset_of!(Self, $field)..],
                ); )*
                out
            }

            /// Decodes a memory image; every byte pattern is a valid value.
            pub fn from_bytes(bytes: &[u8; $size]) -> Self {
                Self { $( $field: $crate::wire::Field::get(
                    &bytes[core::mem::offset_of!(Self, $field)..],
                ), )* }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::ZERO
            }
        }

        impl $crate::wire::Field for $name {
            const ZERO: Self = $name::ZERO;
            const SIZE: usize = $size;
            fn put(&self, out: &mut [u8]) {
                out[..$size].copy_from_slice(&self.to_bytes());
            }
            fn get(inp: &[u8]) -> Self {
                let mut b = [0u8; $size];
                b.copy_from_slice(&inp[..$size]);
                Self::from_bytes(&b)
            }
        }

        // The C layout: size and every named field's offset and size.
        const _: () = {
            use core::mem::{offset_of, size_of};
            assert!(size_of::<$name>() == $size);
            // No implicit padding: the fields cover every byte.
            assert!(0 $( + size_of::<$fty>() )* == $size);
            $( $(
                assert!(offset_of!($name, $field) == offset_of!($cty, $cfield));
                assert!(size_of::<$fty>() == $crate::wire::field_size(|c: &$cty| &c.$cfield));
            )? )*
        };
    };
}
pub(crate) use wire_struct;

/// The size of a field of a C struct, named by a projection (`|c| &c.field`).
///
/// `const` so the layout assertions can use it; the closure is never called.
pub(crate) const fn field_size<C, F>(_project: fn(&C) -> &F) -> usize {
    core::mem::size_of::<F>()
}
