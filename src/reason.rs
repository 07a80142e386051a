//! Why a line or a metric was dropped: small `Copy` enums whose label is also the drop
//! counter's `reason` label on `/metrics`.
//!
//! Owns: the closed list of reasons. Must never: carry data (they sit on the hot path).

macro_rules! reasons {
    ($(#[$doc:meta])* $ty:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($(#[$vdoc])* $variant,)* }

        impl $ty {
            /// Every reason, in declaration order; `self as usize` indexes this array.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The counter label.
            pub const fn label(self) -> &'static str {
                match self { $($ty::$variant => $label,)* }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

reasons! {
    /// A statsd line (or one of its samples) refused at ingest.
    Reject {
        /// Longer than `statsd.max_line`.
        LineTooLong => "line_too_long",
        /// Not valid UTF-8 (Monasca names and dimensions are text).
        BadEncoding => "bad_encoding",
        /// No `:` separating name and value.
        MissingValue => "missing_value",
        /// No `|type` field.
        MissingType => "missing_type",
        /// A type other than c, g, ms, h, d, s, r.
        UnknownType => "unknown_type",
        /// A value that is not a number (or an empty set member).
        BadValue => "bad_value",
        /// NaN or ±Infinity.
        NonFiniteValue => "non_finite_value",
        /// A negative sample for a timer, histogram or distribution.
        NegativeSample => "negative_sample",
        /// `@rate` not in (0, 1].
        BadSampleRate => "bad_sample_rate",
        /// `@rate` below 1e-6 (a weight over a million per sample): such weights overflow
        /// the counts they feed and no client samples that sparsely.
        SampleRateTooSmall => "sample_rate_too_small",
        /// A name that is empty, longer than 255 chars or has a character Monasca refuses.
        BadName => "bad_name",
        /// Malformed dimensions, or a key or value Monasca would refuse.
        BadDimension => "bad_dimension",
        /// More dimensions than `statsd.max_dimensions`.
        TooManyDimensions => "too_many_dimensions",
        /// A `|T` timestamp that is not whole seconds in 1..=9999999999.
        BadTimestamp => "bad_timestamp",
        /// A malformed `_sc` service check.
        BadServiceCheck => "bad_service_check",
        /// `_e{...}` events: Monasca has no event API here.
        Event => "event",
        /// A new series beyond `aggregate.max_series` in the interval.
        SeriesLimit => "series_limit",
        /// A set member beyond `aggregate.max_set_members` in the interval.
        SetMemberLimit => "set_member_limit",
        /// A new series of a name beyond `aggregate.max_series_per_name` in the interval.
        NameSeriesLimit => "name_series_limit",
    }
}

reasons! {
    /// An aggregated metric dropped at flush because Monasca would refuse it.
    EmitDrop {
        /// The derived name (e.g. `name.95percentile`) is longer than 255 chars.
        NameTooLong => "name_too_long",
        /// The value is not finite (e.g. a counter sum that overflowed).
        NonFiniteValue => "non_finite_value",
        /// The sink refused the flush (e.g. stdout closed).
        SinkFailed => "sink_failed",
        /// A gauge beyond `aggregate.max_series` persisted gauges, not carried over.
        SeriesLimit => "series_limit",
        /// A rate base (the last sample of an `r` series, where its next rate starts) or a
        /// percent change base (the last value of a `pc` series) beyond
        /// `aggregate.max_series` kept, not carried over: that series' next interval needs
        /// two samples for a rate, and one `pc` value alone reads as a first one (0).
        RateBaseLimit => "rate_base_limit",
    }
}

reasons! {
    /// A batch (or some of its metrics) given up on the way to Monasca.
    BatchDrop {
        /// `buffer.max_bytes` was full when the flush queued it.
        BufferFull => "buffer_full",
        /// One metric larger than `monasca.max_batch_bytes`, or a one-metric batch answered 413.
        TooLarge => "too_large",
        /// Monasca answered 400/422 (or another 4xx): refused whole, retrying cannot help.
        Refused => "refused",
        /// Monasca answered "Forbidden": the token's roles may not post metrics.
        Forbidden => "forbidden",
        /// `monasca.tenant_id` is set but the token may not post for other projects.
        TenantRefused => "tenant_refused",
        /// Still queued or in flight when `shutdown.grace` ran out.
        Shutdown => "shutdown",
        /// Evicted from the disk spool, oldest first, to stay under `buffer.spool_max_bytes`.
        SpoolFull => "spool_full",
        /// In the disk spool longer than `buffer.spool_max_age`.
        SpoolExpired => "spool_expired",
        /// The disk spool could not be written (disk full, read-only, I/O error) and the
        /// memory queue was full.
        SpoolError => "spool_error",
        /// A spooled batch that could not be read back intact.
        SpoolCorrupt => "spool_corrupt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_all_array() {
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let labels: std::collections::HashSet<_> = Reject::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reject::COUNT, "labels are unique");
    }
}
