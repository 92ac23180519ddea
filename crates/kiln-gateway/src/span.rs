//! The request span: `routes::handle` opens it with the fields known at once, and the request's
//! path fills in the rest as it learns them (host, client kind, bot family, crawler verdict, cache
//! status), so that whatever is logged during the request carries them.

/// Records several of `span`'s fields at once. With the JSON log format every `record` formats what
/// it is given into a string of its own and appends it to the span's, so a cache hit that filled in
/// its seven fields one by one paid seven times; grouped, it pays three. A `None` value leaves its
/// field as it was; a name the span does not have is skipped (and a test build stops on it).
pub(crate) fn record_fields<const N: usize>(
    span: &tracing::Span,
    values: [(&str, Option<&dyn tracing::Value>); N],
) {
    let Some(metadata) = span.metadata() else {
        // A disabled span (logs filtered above info) records nothing.
        return;
    };
    let fields = metadata.fields();
    let named: [Option<tracing::field::Field>; N] =
        std::array::from_fn(|i| fields.field(values[i].0));
    if named.iter().any(Option::is_none) {
        debug_assert!(false, "a field the request span does not have");
        return;
    }
    let pairs: [(&tracing::field::Field, Option<&dyn tracing::Value>); N] =
        std::array::from_fn(|i| (named[i].as_ref().expect("checked above"), values[i].1));
    span.record_all(&fields.value_set(&pairs));
}
