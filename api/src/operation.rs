//! One GraphQL operation, validated the same way on every transport (POST, GET, both WebSocket
//! protocols): against the document limits, or, for a document that asks for introspection
//! only, against introspection's own.
//!
//! The standard introspection query of graphql-js (which GraphiQL, Apollo, codegen tools,
//! Postman and Insomnia send) nests its `ofType` chain and its fragments deeper than any query of
//! the schema's own needs, so a depth limit tight enough for the schema refuses it. Such a
//! document is checked instead by the rule graphql-js itself applies to introspection
//! (`MaxIntrospectionDepthRule`): the lists that multiply a response (`fields`, `inputFields`,
//! `interfaces`, `possibleTypes`) may not nest inside one another beyond a small bound, while
//! `ofType`, which names one type, may chain; tokens stay limited as for every document.

use std::collections::HashMap;

use juniper::{
    parser::{parse_document_source, ParseError},
    DefaultScalarValue, Definition, GraphQLError, RuleError, Selection, ValidatedOperation,
};

use crate::schema::{schema, Mutation, Query, Schema, Subscription};

pub type Validated<'a> = ValidatedOperation<'a, Query, Mutation, Subscription, DefaultScalarValue>;

/// The schema with the document limits, and the same schema with introspection's.
pub struct Schemas {
    strict: Schema,
    introspection: Schema,
}

/// How deeply introspection's multiplying lists may nest in one another (graphql-js allows the
/// same: its own standard query nests one).
const MAX_INTROSPECTION_LIST_NESTING: usize = 2;

impl Schemas {
    pub fn new(limits: &crate::Limits) -> Schemas {
        let introspection = crate::Limits {
            // ofType chains and fragment spreads; the parser's own guard stays far away.
            max_depth: 40,
            // A full introspection query of graphql-js expands to a few hundred fields.
            max_fields: 2_000,
            ..limits.clone()
        };
        Schemas { strict: schema(limits), introspection: schema(&introspection) }
    }

    /// Parses and validates `query` for execution.
    pub fn validate<'a>(&'a self, query: &'a str, operation_name: Option<&str>) -> Result<Validated<'a>, GraphQLError> {
        // Only a document that names an introspection field needs the walk below.
        let shape = (query.contains("__schema") || query.contains("__type")).then(|| self.introspection_shape(query));
        if let Some(Some(shape)) = &shape {
            if shape.too_nested {
                let message = format!(
                    "introspection nests `fields`, `inputFields`, `interfaces` or `possibleTypes` more than \
                     {MAX_INTROSPECTION_LIST_NESTING} deep"
                );
                return Err(GraphQLError::ValidationError(vec![RuleError::new(&message, &[])]));
            }
        }
        match Validated::new(query, operation_name, &self.strict) {
            Err(GraphQLError::ParseError(e))
                if matches!(e.item, ParseError::DepthLimitExceeded(_) | ParseError::FieldLimitExceeded(_))
                    && matches!(shape, Some(Some(IntrospectionShape { only_introspection: true, .. }))) =>
            {
                Validated::new(query, operation_name, &self.introspection)
            }
            other => other,
        }
    }

    /// How `query` uses introspection, if it parses within introspection's limits.
    fn introspection_shape(&self, query: &str) -> Option<IntrospectionShape> {
        let document = parse_document_source(query, &self.introspection.schema).ok()?;
        let fragments: HashMap<&str, &[Selection<'_, DefaultScalarValue>]> = document
            .iter()
            .filter_map(|d| match d {
                Definition::Fragment(f) => Some((f.item.name.item, f.item.selection_set.as_slice())),
                Definition::Operation(_) => None,
            })
            .collect();
        let walker = IntrospectionWalk { fragments: &fragments };
        let mut shape = IntrospectionShape { only_introspection: true, too_nested: false };
        for definition in &document {
            if let Definition::Operation(operation) = definition {
                walker.visit(&operation.item.selection_set, Visit { root: true, lists: None, spreads: 0 }, &mut shape);
            }
        }
        Some(shape)
    }
}

struct IntrospectionShape {
    /// Every operation selects only introspection fields at its root.
    only_introspection: bool,
    /// Introspection's lists nest beyond [`MAX_INTROSPECTION_LIST_NESTING`] somewhere.
    too_nested: bool,
}

struct IntrospectionWalk<'f, 'a> {
    fragments: &'f HashMap<&'a str, &'f [Selection<'a, DefaultScalarValue>]>,
}

/// Fragment spreads followed at most this deep (validation refuses cycles; this only bounds the
/// walk before validation has run).
const MAX_SPREADS: usize = 32;

/// Where a walk is: at an operation's root, how many of introspection's lists it is inside
/// (`None` outside introspection: the schema's own fields may share those names), and how many
/// fragment spreads it followed.
#[derive(Clone, Copy)]
struct Visit {
    root: bool,
    lists: Option<usize>,
    spreads: usize,
}

impl<'a> IntrospectionWalk<'_, 'a> {
    /// Visits every field of `selections`, through fragments, noting in `shape` a root field
    /// that is not introspection and introspection's lists nested too deep.
    fn visit(&self, selections: &[Selection<'a, DefaultScalarValue>], at: Visit, shape: &mut IntrospectionShape) {
        if at.spreads > MAX_SPREADS {
            shape.only_introspection = false;
            return;
        }
        for selection in selections {
            match selection {
                Selection::Field(field) => {
                    let name = field.item.name.item;
                    if at.root && !name.starts_with("__") {
                        shape.only_introspection = false;
                    }
                    let lists = match at.lists {
                        None if matches!(name, "__schema" | "__type") => Some(0),
                        None => None,
                        Some(n) => Some(
                            n + usize::from(matches!(name, "fields" | "inputFields" | "interfaces" | "possibleTypes")),
                        ),
                    };
                    if lists.is_some_and(|n| n > MAX_INTROSPECTION_LIST_NESTING) {
                        shape.too_nested = true;
                    } else if let Some(nested) = &field.item.selection_set {
                        self.visit(nested, Visit { root: false, lists, ..at }, shape);
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.visit(&fragment.item.selection_set, Visit { spreads: at.spreads + 1, ..at }, shape)
                }
                // An undefined fragment is validation's to report; it relaxes nothing.
                Selection::FragmentSpread(spread) => match self.fragments.get(spread.item.name.item) {
                    Some(nested) => self.visit(nested, Visit { spreads: at.spreads + 1, ..at }, shape),
                    None => shape.only_introspection = false,
                },
            }
        }
    }
}
