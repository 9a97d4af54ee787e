// Error responses in the shape AWS JSON 1.1 services use, so SDKs parse them into named exceptions.

export interface AwsErrorResponse {
  status: number;
  code: string;
  message: string;
  /** Some front-end errors spell the field "message"; service errors "Message". */
  messageField?: "message" | "Message";
}

export class AwsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
    readonly messageField: "message" | "Message" = "Message",
  ) {
    super(message);
    this.name = code;
  }
}

export const awsErrors = {
  missingAuthentication: () => new AwsError("MissingAuthenticationTokenException", "Missing Authentication Token", 400, "message"),
  unrecognizedClient: () =>
    new AwsError("UnrecognizedClientException", "The security token included in the request is invalid.", 400, "message"),
  invalidSignature: (detail: string) => new AwsError("InvalidSignatureException", detail, 400, "message"),
  accessDenied: (operation: string, resource: string, account: string) =>
    new AwsError(
      "AccessDeniedException",
      `User: arn:aws:iam::${account}:user/rdsd-emulator is not authorized to perform: ssm:${operation} on resource: ${resource} because no identity-based policy allows the ssm:${operation} action`,
    ),
  validation: (message: string) => new AwsError("ValidationException", message),
  serialization: (message: string) => new AwsError("SerializationException", message, 400, "message"),
  unknownOperation: () => new AwsError("UnknownOperationException", "", 400, "message"),
  targetNotConnected: (target: string) => new AwsError("TargetNotConnected", `${target} is not connected.`),
  invalidDocument: (message: string) => new AwsError("InvalidDocument", message),
  invalidParameters: (message: string) => new AwsError("InvalidParameters", message),
  doesNotExist: (message: string) => new AwsError("DoesNotExistException", message),
  invalidInstanceId: (message: string) => new AwsError("InvalidInstanceId", message),
  invalidFilterKey: () => new AwsError("InvalidFilterKey", "The specified key is not valid."),
  invalidFilterValue: (message: string) => new AwsError("InvalidInstanceInformationFilterValue", message, 400, "message"),
  invalidNextToken: () => new AwsError("InvalidNextToken", "The specified token is not valid."),
};

/** The HTTP body and headers of an error. */
export function errorBody(err: AwsError): { status: number; headers: Record<string, string>; body: string } {
  return {
    status: err.status,
    headers: { "content-type": "application/x-amz-json-1.1", "x-amzn-errortype": `${err.code}:` },
    body: JSON.stringify({ __type: err.code, [err.messageField]: err.message }),
  };
}
