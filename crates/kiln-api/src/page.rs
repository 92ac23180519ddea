//! A listing's pages: how many entries a query may ask for, and the cursor of the next page.

use kiln_frontdoor::ApiError;

/// How many entries a listing gives per page: `default` when the query's `limit` is left out, and
/// `max` at most. (Its query's `#[param(minimum = 1, maximum = …)]` says the same to the document.)
pub struct PageSize {
    pub default: u32,
    pub max: u32,
}

impl PageSize {
    /// The page size a query's `limit` asks for, refused unless it is from 1 to `max`.
    pub fn of(&self, limit: Option<u32>) -> Result<u32, ApiError> {
        let limit = limit.unwrap_or(self.default);
        if (1..=self.max).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::bad_request(format!(
                "`limit` must be between 1 and {}",
                self.max
            )))
        }
    }
}

/// The answer to a `cursor` that no page of the listing could have given.
pub fn unknown_cursor() -> ApiError {
    ApiError::bad_request("`cursor` is not one this API returned")
}

/// The cursor of the page after `entries`, taken from the last entry: none when the page is not
/// full, as then it is the last page.
pub fn next_cursor<T, C>(entries: &[T], limit: u32, cursor: impl FnOnce(&T) -> C) -> Option<C> {
    if entries.len() == limit as usize {
        entries.last().map(cursor)
    } else {
        None
    }
}
