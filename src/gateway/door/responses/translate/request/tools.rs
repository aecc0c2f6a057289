//! Tools, `tool_choice` and `text.format` into their chat forms.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::super::loose::{Loose, Obj, Skip, text};
use super::messages::Translation;
use super::read::{Choice, Format, Grammar, Tool};
use super::{BRIDGED, Untranslatable, refuse};

/// A chat tool, as it will be written.
#[derive(Debug)]
pub(super) enum ChatTool<'a> {
    Function {
        name: Cow<'a, str>,
        description: Option<Cow<'a, str>>,
        /// Passed on as written; `None` (not an object) for an empty one.
        parameters: Option<&'a RawValue>,
        strict: Option<bool>,
    },
    /// A custom tool as a function of one string, `input`, described so.
    Custom {
        name: Cow<'a, str>,
        description: Option<Cow<'a, str>>,
        input: String,
    },
}

/// The hosted tools OpenAI runs itself, refused by name.
pub(super) fn hosted(kind: &str) -> bool {
    kind.starts_with("web_search")
        || kind.starts_with("computer_use")
        || matches!(
            kind,
            "file_search"
                | "code_interpreter"
                | "image_generation"
                | "mcp"
                | "local_shell"
                | "shell"
                | "apply_patch"
                | "computer"
        )
}

impl<'a> Translation<'a> {
    pub(super) fn tool(
        &mut self,
        tool: Obj<'a, Tool<'a>>,
        namespace: Option<&str>,
    ) -> Result<(), Untranslatable> {
        // Not an object: no `type`.
        let Loose::Object(tool) = tool else {
            return Err(refuse("a tool has no `type`"));
        };
        let description = match tool.description {
            Some(Loose::Text(d)) => Some(d),
            _ => None,
        };
        match text(&tool.kind).unwrap_or("") {
            "function" => {
                let name = tool_name(tool.name)?;
                let parameters = tool.parameters.filter(|p| p.get().starts_with('{'));
                let strict = match tool.strict.map(RawValue::get) {
                    Some("true") => Some(true),
                    Some("false") => Some(false),
                    _ => None,
                };
                self.index.add(&name, false, namespace);
                self.tools.push(ChatTool::Function {
                    name,
                    description,
                    parameters,
                    strict,
                });
                Ok(())
            }
            "custom" => {
                let name = tool_name(tool.name)?;
                let input = match tool.format {
                    Some(Loose::Object(Grammar {
                        kind: Some(Loose::Text(kind)),
                        syntax,
                        definition,
                    })) if kind == "grammar" => format!(
                        "The tool's whole input, as free text following this {} grammar:\n{}",
                        text(&syntax).unwrap_or(""),
                        text(&definition).unwrap_or("")
                    ),
                    _ => String::from("The tool's whole input, as free text."),
                };
                self.index.add(&name, true, namespace);
                self.tools.push(ChatTool::Custom {
                    name,
                    description,
                    input,
                });
                Ok(())
            }
            "namespace" => {
                let ns = text(&tool.name);
                if let Some(Loose::List(inner)) = tool.tools {
                    for t in inner {
                        self.tool(t, ns)?;
                    }
                }
                Ok(())
            }
            "tool_search" => Ok(()),
            k if hosted(k) => Err(refuse(format!(
                "the hosted tool `{k}` {BRIDGED}: only OpenAI's Responses API runs it"
            ))),
            "" => Err(refuse("a tool has no `type`")),
            other => Err(refuse(format!("tool type `{other}` {BRIDGED}"))),
        }
    }
}

fn tool_name(name: Option<Loose<'_>>) -> Result<Cow<'_, str>, Untranslatable> {
    match name {
        Some(Loose::Text(n)) => Ok(n),
        _ => Err(refuse("a tool has no `name`")),
    }
}

/// A chat `tool_choice`, as it will be written.
#[derive(Debug)]
pub(super) enum ChatChoice<'a> {
    /// `auto`, `none` or `required`.
    Mode(Cow<'a, str>),
    /// A function by name.
    Named(Cow<'a, str>),
}

pub(super) fn tool_choice(choice: &RawValue) -> Result<Option<ChatChoice<'_>>, Untranslatable> {
    let read = serde_json::from_str::<Loose<Skip, Choice>>(choice.get());
    match read {
        Ok(Loose::Text(s)) if matches!(&*s, "auto" | "none" | "required") => {
            Ok(Some(ChatChoice::Mode(s)))
        }
        Ok(Loose::Null) => Ok(None),
        Ok(Loose::Object(c)) => match text(&c.kind).unwrap_or("") {
            "function" | "custom" => match c.name {
                Some(Loose::Text(name)) => Ok(Some(ChatChoice::Named(name))),
                _ => Err(refuse("`tool_choice` names no tool")),
            },
            k if hosted(k) => Err(refuse(format!(
                "the hosted tool `{k}` in `tool_choice` {BRIDGED}"
            ))),
            other => Err(refuse(format!("`tool_choice` of type `{other}` {BRIDGED}"))),
        },
        // Named as a `Value` prints it.
        _ => {
            let shown = serde_json::from_str::<serde_json::Value>(choice.get())
                .map(|v| v.to_string())
                .unwrap_or_else(|_| choice.get().to_string());
            Err(refuse(format!("`tool_choice` {shown} {BRIDGED}")))
        }
    }
}

/// A chat `response_format`, as it will be written.
#[derive(Debug)]
pub(super) enum ChatFormat<'a> {
    JsonObject,
    /// The members of `json_schema` given (in written order).
    JsonSchema(Vec<(&'static str, &'a RawValue)>),
}

pub(super) fn response_format<'a>(
    format: Obj<'a, Format<'a>>,
) -> Result<Option<ChatFormat<'a>>, Untranslatable> {
    let Loose::Object(format) = format else {
        return Ok(None);
    };
    match text(&format.kind) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ChatFormat::JsonObject)),
        Some("json_schema") => {
            let members = [
                ("description", format.description),
                ("name", format.name),
                ("schema", format.schema),
                ("strict", format.strict),
            ];
            Ok(Some(ChatFormat::JsonSchema(
                members
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect(),
            )))
        }
        Some(other) => Err(refuse(format!("`text.format` of type `{other}` {BRIDGED}"))),
    }
}
