"""Validates openapi.yaml and asyncapi.yaml with their ecosystems' own models.

openapi.yaml: openapi-spec-validator, against the OpenAPI 3.2 specification
schema. asyncapi.yaml: AsyncAPI's own parser and validator are npm packages
and its JSON Schema is published outside PyPI, so the document is loaded
into pydantic-asyncapi's models of AsyncAPI 3.0 instead (required fields,
actions, references and schema formats from a fixed list). The test suite
adds the structural rules those models leave out (test-support/src/documents.rs).
"""

import sys

import yaml
from openapi_spec_validator import OpenAPIV32SpecValidator, validate
from pydantic_asyncapi import AsyncAPIV3


def main(openapi_path, asyncapi_path):
    with open(openapi_path, encoding="utf-8") as f:
        openapi = yaml.safe_load(f)
    validate(openapi, cls=OpenAPIV32SpecValidator)
    print(f"{openapi_path}: valid OpenAPI {openapi['openapi']}")
    with open(asyncapi_path, encoding="utf-8") as f:
        asyncapi = yaml.safe_load(f)
    document = AsyncAPIV3.model_validate(asyncapi)
    print(f"{asyncapi_path}: valid AsyncAPI {document.asyncapi} ({len(document.channels)} channels)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
