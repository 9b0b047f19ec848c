//! A libyaml event reader (the parser serde_yaml is built on), for the bounded pre-pass over
//! workload files in `spec::input`: the crate's only `unsafe` outside the guest's system calls.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// 1-based position of an event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// What the pass needs of a libyaml event: anchors and structure, not values.
pub(crate) enum Event {
    StreamEnd,
    DocumentStart,
    Scalar(Option<Vec<u8>>),
    CollectionStart(Option<Vec<u8>>),
    CollectionEnd,
    Alias(Vec<u8>),
    Other,
}

/// A libyaml parser over borrowed input, yielding one event at a time.
pub(crate) struct EventParser<'input> {
    /// Boxed so it never moves: libyaml's string reader keeps a pointer to the parser itself.
    parser: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
    /// libyaml reads from the input by raw pointer for the parser's whole life.
    input: PhantomData<&'input [u8]>,
    /// After the stream end or an error, libyaml must not be asked again.
    finished: bool,
}

impl<'input> EventParser<'input> {
    pub(crate) fn new(input: &'input [u8]) -> Self {
        let mut parser = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
        let raw = parser.as_mut_ptr();
        // SAFETY: `raw` points to a heap allocation of the right size and alignment that
        // `yaml_parser_initialize` zeroes and fills in; the box never moves it, so the pointer
        // `yaml_parser_set_input_string` stores to the parser stays valid. The input pointer and
        // length come from a slice that outlives the parser (`'input`), and a slice's pointer is
        // never null, as libyaml asserts, even when it is empty.
        unsafe {
            // unsafe-libyaml's initialize only allocates, and allocation failure aborts.
            let initialized = unsafe_libyaml::yaml_parser_initialize(raw);
            assert!(initialized.ok, "libyaml parser initialization failed");
            unsafe_libyaml::yaml_parser_set_encoding(raw, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(raw, input.as_ptr(), input.len() as u64);
        }
        Self {
            parser,
            input: PhantomData,
            finished: false,
        }
    }

    /// The next event and where it starts; `None` after the end of the stream or a syntax error.
    pub(crate) fn next(&mut self) -> Option<(Event, Position)> {
        if self.finished {
            return None;
        }
        let mut raw_event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        let event_ptr = raw_event.as_mut_ptr();
        // SAFETY: the parser was initialized in `new` and has not failed or finished (checked
        // above), so `yaml_parser_parse` may be called; it fully writes `event_ptr` (zeroing it
        // first) whenever it succeeds, and only then is the event read. The union field read
        // matches the event's type, anchors are NUL-terminated strings owned by the event and
        // copied before `yaml_event_delete` frees them, and the event is deleted exactly once.
        unsafe {
            if !unsafe_libyaml::yaml_parser_parse(self.parser.as_mut_ptr(), event_ptr).ok {
                self.finished = true;
                return None;
            }
            let event = &*event_ptr;
            if event.type_ == unsafe_libyaml::YAML_NO_EVENT {
                // Only after the end; nothing to delete.
                self.finished = true;
                return None;
            }
            let converted = match event.type_ {
                unsafe_libyaml::YAML_STREAM_END_EVENT => {
                    self.finished = true;
                    Event::StreamEnd
                }
                unsafe_libyaml::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
                unsafe_libyaml::YAML_SCALAR_EVENT => {
                    Event::Scalar(anchor_name(event.data.scalar.anchor))
                }
                unsafe_libyaml::YAML_SEQUENCE_START_EVENT => {
                    Event::CollectionStart(anchor_name(event.data.sequence_start.anchor))
                }
                unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                    Event::CollectionStart(anchor_name(event.data.mapping_start.anchor))
                }
                unsafe_libyaml::YAML_SEQUENCE_END_EVENT
                | unsafe_libyaml::YAML_MAPPING_END_EVENT => Event::CollectionEnd,
                unsafe_libyaml::YAML_ALIAS_EVENT => {
                    Event::Alias(anchor_name(event.data.alias.anchor).unwrap_or_default())
                }
                _ => Event::Other,
            };
            let mark = event.start_mark;
            unsafe_libyaml::yaml_event_delete(event_ptr);
            let position = Position {
                line: usize::try_from(mark.line)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
                column: usize::try_from(mark.column)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            };
            Some((converted, position))
        }
    }
}

/// Copies an anchor name out of a libyaml event.
///
/// # Safety
///
/// `name` is null or points to a NUL-terminated string that stays alive during the call.
unsafe fn anchor_name(name: *const u8) -> Option<Vec<u8>> {
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, and NUL-terminated and alive by the caller's contract.
    let name = unsafe { CStr::from_ptr(name.cast()) };
    Some(name.to_bytes().to_vec())
}

impl Drop for EventParser<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialized in `new` (an `EventParser` exists only then) and is
        // deleted only here, once.
        unsafe { unsafe_libyaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}
